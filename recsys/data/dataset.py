"""Read and write canonical datasets (see recsys.data.schema) atomically.

Writers build the directory under a temporary sibling and rename it into place, so a failed or interrupted
prepare never leaves a half-written dataset and never destroys the previous one.

Point-in-time rule for content: an item's content features (text, media, precomputed vectors, and everything
derived from them: embeddings, semantic IDs) are available from its first appearance, whichever of `created_at`
and its first interaction is earlier (`Dataset.item_available_at`). Catalogue ingestion or update times often put
`created_at` after the item's first interactions; those items are counted (a WARNING at prepare time and
`items_created_after_first_interaction` in the summary), not treated as absent until created_at.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from recsys.data.schema import (
    FEEDBACK_TEXT,
    ITEM_LIST_FIELDS,
    ITEM_TEXT_FIELDS,
    MODALITIES,
    PRECOMPUTED_VECTOR_PREFIX,
    Feedback,
    Manifest,
    PositiveRule,
)
from recsys.data.split import Fold, TemporalSplit
from recsys.data.validate import validate_interactions, validate_items, validate_queries, validate_users
from recsys.errors import DataError
from recsys.io import atomic_directory

log = logging.getLogger(__name__)

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

    @property
    def feedback(self) -> Feedback:
        """"explicit" (interactions are impressions) or "implicit" (every interaction is positive)."""
        return self.manifest.feedback

    def is_positive(self, interactions: pd.DataFrame | None = None) -> pd.Series:
        df = self.interactions if interactions is None else interactions
        return df[self.positive.column] >= self.positive.min_value

    def media_path(self, path: str) -> Path:
        """Resolve an item's media path (relative to the dataset directory, or absolute)."""
        p = Path(path)
        return p if p.is_absolute() or self.root is None else self.root / p

    def item_available_at(self) -> pd.Series:
        """When each item's content becomes available: min(created_at, first interaction) (module docstring)."""
        return item_available_at(self.items, self.interactions)

    def summary(self) -> dict:
        m = self.manifest
        periods = self.split.period(self.interactions["timestamp"]).value_counts().to_dict()
        return {
            "name": m.name,
            "source": m.source,
            "feedback": FEEDBACK_TEXT[m.feedback],
            "users": int(self.interactions["user_id"].nunique()),
            "items": len(self.items),
            "interactions": len(self.interactions),
            "modalities": ", ".join(m.modalities),
            **m.content,
            "queries": 0 if self.queries is None else len(self.queries),
            "positive_rule": self.positive.describe(),
            "positive_rate": float(self.is_positive().mean()),
            "train/valid/test interactions": f"{periods.get('train', 0)}/{periods.get('valid', 0)}/"
                                             f"{periods.get('test', 0)}",
            "time_range": " .. ".join(m.time_range),
            **{f"skipped {k}": v for k, v in m.skipped.items()},
            "content_hash": m.content_hash[:16],
            "source_fingerprint": m.source_fingerprint[:16] or "none (not written by recsys data prepare)",
        }


def item_available_at(items: pd.DataFrame, interactions: pd.DataFrame) -> pd.Series:
    """min(created_at, first interaction) per item (index item_id, datetime64[us, UTC], name available_at)."""
    created = items.set_index("item_id")["created_at"]
    first = interactions.groupby("item_id")["timestamp"].min().reindex(created.index)
    return created.mask(first < created, first).astype("datetime64[us, UTC]").rename("available_at")


def items_created_after_first_interaction(items: pd.DataFrame, interactions: pd.DataFrame) -> int:
    created = items.set_index("item_id")["created_at"]
    first = interactions.groupby("item_id")["timestamp"].min().reindex(created.index)
    return int((first < created).sum())


def _has_text(items: pd.DataFrame) -> pd.Series:
    has = pd.Series(False, index=items.index)
    for col in ITEM_TEXT_FIELDS:
        has |= items[col].map(lambda v: isinstance(v, str) and bool(v.strip()))
    for col in ("tags", "categories"):
        has |= items[col].map(len) > 0
    return has


def media_report(items: pd.DataFrame, root: Path | None) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """(modalities, content counts, missing-file counts) of what the items really have.

    With a root, media files are checked (relative paths against root): an item has an image or audio only if the
    file exists; missing files are counted per modality (the paths stay: encoders skip and report them too).
    A modality is listed when at least one item has it as a file or as a precomputed vector vec_<modality>.
    """
    def exists(path: str) -> bool:
        p = Path(path)
        return (p if p.is_absolute() or root is None else root / p).is_file()

    check = root is not None
    if check:
        image_ok = items["image_paths"].map(lambda ps: [exists(p) for p in ps])
        audio_ok = items["audio_path"].map(lambda p: None if p is None else exists(p))
    else:
        image_ok = items["image_paths"].map(lambda ps: [True] * len(ps))
        audio_ok = items["audio_path"].map(lambda p: None if p is None else True)
    has = {"text": _has_text(items), "image": image_ok.map(any), "audio": audio_ok.map(bool)}
    vectors = {c: items[c].notna() for c in items.columns if c.startswith(PRECOMPUTED_VECTOR_PREFIX)}
    content = {f"items_with_{m}": int(has[m].sum()) for m in MODALITIES}
    content.update({f"items_with_{c}": int(v.sum()) for c, v in vectors.items()})
    modalities = [m for m in MODALITIES
                  if has[m].any() or vectors.get(f"{PRECOMPUTED_VECTOR_PREFIX}{m}", pd.Series(dtype=bool)).any()]
    missing = {}
    if check:
        missing = {"missing_image_files": int(image_ok.map(lambda ok: len(ok) - sum(ok)).sum()),
                   "missing_audio_files": int(audio_ok.map(lambda ok: ok is False).sum())}
    return modalities, content, missing


def _resolve_media(items: pd.DataFrame, media_root: Path) -> pd.DataFrame:
    """Relative media paths -> absolute paths under media_root (the source folder), so they survive prepare."""
    base = Path(media_root).resolve()

    def absolute(path: str) -> str:
        p = Path(path)
        return str(p if p.is_absolute() else (base / p).resolve())

    items = items.copy()
    items["image_paths"] = items["image_paths"].map(lambda ps: [absolute(p) for p in ps])
    items["audio_path"] = items["audio_path"].map(lambda p: None if p is None else absolute(p))
    return items


def detect_feedback(interactions: pd.DataFrame, positive: PositiveRule, declared: str, file: str) -> Feedback:
    """explicit/implicit from the positive rule; no positive at all, or a declaration the data contradicts, is a
    DataError (declared: auto | explicit | implicit, the config key data.feedback)."""
    pos = interactions[positive.column] >= positive.min_value
    n, n_pos = len(pos), int(pos.sum())
    rule = (f"positive rule {positive.describe()} (data.positive.column={positive.column}, "
            f"data.positive.min_value={positive.min_value:g})")
    if n_pos == 0:
        raise DataError(f"no interaction of {n} is positive by the {rule}: there is nothing to learn from",
                        file=file, column=positive.column)
    feedback: Feedback = "implicit" if n_pos == n else "explicit"
    if declared == "explicit" and feedback == "implicit":
        raise DataError(f"data.feedback is 'explicit' but all {n} interactions are positive by the {rule}: there "
                        "are no impressions to use as negatives; set data.feedback: implicit (or auto) so ranking "
                        "samples negatives", file=file, column=positive.column)
    if declared == "implicit" and feedback == "explicit":
        raise DataError(f"data.feedback is 'implicit' but {n - n_pos} of {n} interactions are negative by the "
                        f"{rule}; implicit feedback means every row is a positive: drop those rows, or set "
                        "data.feedback: auto", file=file, column=positive.column)
    return feedback


def _add_counts(*reports: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for report in reports:
        for k, v in report.items():
            out[k] = out.get(k, 0) + int(v)
    return out


def fold_view(ds: Dataset, fold: Fold) -> Dataset:
    """The dataset as one rolling-origin fold sees it: interactions before fold.test_end only, the fold's split,
    and a content hash of its own (so every artefact built for it is fingerprinted apart from the others'). Items,
    users and queries carry no time and stay whole; an item's content becomes available as usual."""
    inter = ds.interactions.loc[ds.interactions["timestamp"] < fold.test_end].reset_index(drop=True)
    if not len(inter):
        raise DataError(f"fold {fold.index} holds no interaction before {fold.test_end}")
    manifest = replace(ds.manifest, split=fold.split.to_manifest(),
                       content_hash=hashlib.sha256(f"{ds.manifest.content_hash}|fold|{fold.to_dict()}".encode())
                       .hexdigest(),
                       row_counts={**ds.manifest.row_counts, "interactions": len(inter)},
                       extra={**ds.manifest.extra, "fold": fold.to_dict()})
    return Dataset(manifest, ds.items, inter, ds.users, ds.queries, ds.root)


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
    feedback: str = "auto",
    media_root: Path | None = None,
    skipped: dict[str, int] | None = None,
    extra: dict | None = None,
    files: dict[str, str] | None = None,
) -> Dataset:
    """Validate raw tables into a Dataset (no hash yet: write_dataset sets it).

    split is a TemporalSplit or (valid_fraction, test_fraction). feedback: auto | explicit | implicit
    (detect_feedback). media_root: the folder relative media paths are relative to (a parquet source folder); they
    are stored absolute. skipped: counted skips an adapter made before (added to the validation's). `files` names
    the source file of each table for error messages.
    """
    files = files or {}
    inter_file = files.get("interactions", "interactions")
    if positive.column not in labels:
        raise DataError(f"positive rule column '{positive.column}' is not a declared label {list(labels)}",
                        file=inter_file)
    items = validate_items(items, files.get("items", "items"))
    if media_root is not None:
        items = _resolve_media(items, media_root)
    interactions, report = validate_interactions(interactions, items["item_id"], list(labels), inter_file,
                                                 unknown_items)
    if users is not None:
        users = validate_users(users, files.get("users", "users"))
    if queries is not None:
        queries = validate_queries(queries, items["item_id"], files.get("queries", "queries"))
    kind = detect_feedback(interactions, positive, feedback, inter_file)
    if not isinstance(split, TemporalSplit):
        split = TemporalSplit.from_fractions(interactions["timestamp"], *split)
    late = items_created_after_first_interaction(items, interactions)
    if late:
        log.warning("%d of %d items have created_at after their first interaction: their content is taken as "
                    "available from the first interaction (Dataset.item_available_at)", late, len(items))
    modalities, content, _ = media_report(items, None)
    ts = interactions["timestamp"]
    manifest = Manifest(
        name=name, source=source, modalities=modalities, labels=labels, positive=positive, feedback=kind,
        time_range=(ts.min().isoformat(), ts.max().isoformat()), split=split.to_manifest(),
        row_counts={"items": len(items), "interactions": len(interactions),
                    "users": int(interactions["user_id"].nunique()),
                    "queries": 0 if queries is None else len(queries)},
        skipped=_add_counts(skipped or {}, report),
        content={**content, "items_created_after_first_interaction": late},
        content_hash="", extra=dict(extra or {}),
    )
    return Dataset(manifest, items, interactions, users, queries)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)


def write_tables(ds: Dataset, directory: Path) -> Dataset:
    """Write tables and manifest into `directory` (normally the temp dir of atomic_directory).

    Media are checked here, where relative paths resolve: missing files are counted skips (per modality) and the
    manifest's modalities and per-modality item counts describe the files that exist.
    """
    directory = Path(directory)
    modalities, content, missing = media_report(ds.items, directory)
    for key, n in missing.items():
        if n:
            log.warning("%s: %d media file(s) listed by items do not exist (%s)", ds.manifest.name, n, key)
    ds.manifest.modalities = modalities
    ds.manifest.content = {**ds.manifest.content, **content}
    ds.manifest.skipped = {**ds.manifest.skipped, **missing}
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


def read_manifest(root: Path) -> Manifest:
    """The manifest of a prepared dataset; DataError when there is none or it cannot be read."""
    path = Path(root) / "manifest.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError("not a prepared dataset (no manifest.json); run `recsys data prepare` first",
                        file=str(root)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"corrupt manifest ({e}); re-prepare the dataset", file=str(path)) from None
    if not isinstance(payload, dict):
        raise DataError("corrupt manifest (not a JSON object); re-prepare the dataset", file=str(path))
    return Manifest.from_dict(payload, file=str(path))


def _read_table(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read a prepared table ({type(e).__name__}: {e}); re-prepare the dataset",
                        file=str(path)) from None


def load_dataset(path: str | Path) -> Dataset:
    root = Path(path)
    manifest = read_manifest(root)
    frames = {name: _read_table(root / f"{name}.parquet") for name in TABLES}
    for name in ("items", "interactions"):
        if frames[name] is None:
            raise DataError("table missing from a prepared dataset", file=str(root / f"{name}.parquet"))
    items = frames["items"]
    for col in ITEM_LIST_FIELDS:
        items[col] = items[col].map(lambda v: [] if v is None else list(v))
    return Dataset(manifest, items, frames["interactions"], frames["users"], frames["queries"], root=root)
