"""Read and write canonical datasets (see recsys.data.schema) atomically.

Writers build the directory under a temporary sibling and rename it into place, so a failed or interrupted
prepare never leaves a half-written dataset and never destroys the previous one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.data.schema import MODALITIES, PRECOMPUTED_VECTOR_PREFIX, Manifest, PositiveRule
from recsys.data.split import TemporalSplit
from recsys.data.validate import validate_interactions, validate_items, validate_queries, validate_users
from recsys.errors import DataError
from recsys.io import atomic_directory

TABLES = ("items", "interactions", "users", "queries")


@dataclass
class Dataset:
    """A canonical dataset in memory: validated tables plus manifest."""

    manifest: Manifest
    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None
    root: Path | None = None

    @property
    def split(self) -> TemporalSplit:
        return TemporalSplit.from_manifest(self.manifest.split)

    @property
    def positive(self) -> PositiveRule:
        return self.manifest.positive

    def is_positive(self, interactions: pd.DataFrame | None = None) -> pd.Series:
        df = self.interactions if interactions is None else interactions
        return df[self.positive.column] >= self.positive.min_value

    def media_path(self, path: str) -> Path:
        """Resolve an item's media path (relative to the dataset directory, or absolute)."""
        p = Path(path)
        return p if p.is_absolute() or self.root is None else self.root / p

    def summary(self) -> dict:
        items = self.items
        n_image = int((items["image_paths"].map(len) > 0).sum())
        n_audio = int(items["audio_path"].notna().sum())
        sp = self.split
        periods = sp.period(self.interactions["timestamp"]).value_counts().to_dict()
        return {
            "name": self.manifest.name,
            "users": int(self.interactions["user_id"].nunique()),
            "items": len(items),
            "interactions": len(self.interactions),
            "items_with_image": n_image,
            "items_with_audio": n_audio,
            "queries": 0 if self.queries is None else len(self.queries),
            "positive_rule": self.positive.describe(),
            "positive_rate": float(self.is_positive().mean()),
            "train/valid/test interactions": f"{periods.get('train', 0)}/{periods.get('valid', 0)}/"
                                             f"{periods.get('test', 0)}",
            "time_range": " .. ".join(self.manifest.time_range),
            "content_hash": self.manifest.content_hash[:16],
        }


def _hash_frame(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_json(orient="split", date_format="iso", date_unit="us").encode()).hexdigest()


def content_hash(tables: dict[str, pd.DataFrame | None], media_root: Path | None) -> str:
    """Hash of every table and of every media file under media_root/media (names and bytes)."""
    h = hashlib.sha256()
    for name in TABLES:
        df = tables.get(name)
        h.update(name.encode())
        h.update(b"-" if df is None else _hash_frame(df).encode())
    if media_root is not None and (media_root / "media").is_dir():
        for path in sorted((media_root / "media").rglob("*")):
            if path.is_file():
                h.update(str(path.relative_to(media_root)).encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def build_dataset(
    *,
    name: str,
    source: str,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    labels: dict[str, str],
    positive: PositiveRule,
    split: TemporalSplit | tuple[float, float],
    users: pd.DataFrame | None = None,
    queries: pd.DataFrame | None = None,
    unknown_items: str = "error",
    extra: dict | None = None,
    files: dict[str, str] | None = None,
) -> Dataset:
    """Validate raw tables into a Dataset (no hash yet: write_dataset sets it).

    split is a TemporalSplit or (valid_fraction, test_fraction). `files` names the source file of each table
    for error messages.
    """
    files = files or {}
    if positive.column not in labels:
        raise DataError(f"positive rule column '{positive.column}' is not a declared label {list(labels)}")
    items = validate_items(items, files.get("items", "items"))
    interactions, report = validate_interactions(interactions, items["item_id"], list(labels),
                                                 files.get("interactions", "interactions"), unknown_items)
    if users is not None:
        users = validate_users(users, files.get("users", "users"))
    if queries is not None:
        queries = validate_queries(queries, items["item_id"], files.get("queries", "queries"))
    if not isinstance(split, TemporalSplit):
        split = TemporalSplit.from_fractions(interactions["timestamp"], *split)
    modalities = ["text"]
    if (items["image_paths"].map(len) > 0).any() or f"{PRECOMPUTED_VECTOR_PREFIX}image" in items:
        modalities.append("image")
    if items["audio_path"].notna().any() or f"{PRECOMPUTED_VECTOR_PREFIX}audio" in items:
        modalities.append("audio")
    ts = interactions["timestamp"]
    manifest = Manifest(
        name=name, source=source, modalities=[m for m in MODALITIES if m in modalities], labels=labels,
        positive=positive, time_range=(ts.min().isoformat(), ts.max().isoformat()), split=split.to_manifest(),
        row_counts={"items": len(items), "interactions": len(interactions),
                    "users": int(interactions["user_id"].nunique()),
                    "queries": 0 if queries is None else len(queries)},
        content_hash="", extra={**(extra or {}), "skipped": report},
    )
    return Dataset(manifest, items, interactions, users, queries)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)


def write_tables(ds: Dataset, directory: Path) -> Dataset:
    """Write tables and manifest into `directory` (normally the temp dir of atomic_directory)."""
    directory = Path(directory)
    tables = {"items": ds.items, "interactions": ds.interactions, "users": ds.users, "queries": ds.queries}
    ds.manifest.content_hash = content_hash(tables, directory)
    for name, df in tables.items():
        if df is not None:
            _write_parquet(df, directory / f"{name}.parquet")
    (directory / "manifest.json").write_text(json.dumps(ds.manifest.to_dict(), indent=2))
    return ds


def write_dataset(ds: Dataset, target: Path) -> Dataset:
    """Atomically write a dataset without media of its own (media paths point elsewhere)."""
    with atomic_directory(Path(target)) as tmp:
        write_tables(ds, tmp)
    ds.root = Path(target)
    return ds


def load_dataset(path: str | Path) -> Dataset:
    root = Path(path)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise DataError("not a prepared dataset (no manifest.json); run `recsys data prepare` first",
                        file=str(root))
    manifest = Manifest.from_dict(json.loads(manifest_path.read_text()))
    frames = {}
    for name in TABLES:
        p = root / f"{name}.parquet"
        frames[name] = pd.read_parquet(p) if p.is_file() else None
    for name in ("items", "interactions"):
        if frames[name] is None:
            raise DataError("table missing from a prepared dataset", file=str(root / f"{name}.parquet"))
    items = frames["items"]
    for col in ("tags", "categories", "image_paths"):
        items[col] = items[col].map(lambda v: [] if v is None else list(v))
    return Dataset(manifest, items, frames["interactions"], frames["users"], frames["queries"], root=root)
