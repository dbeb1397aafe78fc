"""Users' own data already in the canonical tables: the path a ranking engineer takes.

Expects a folder with items.parquet and interactions.parquet (optional users.parquet, queries.parquet; each a file
or a folder of parquet parts) whose columns follow recsys.data.schema. Label columns and the positive rule are
given by the caller (config), or inferred: every numeric interaction column other than the ids without missing
values is a label (a column with gaps is not inferred: declared in data.labels, its rows with a missing value are
dropped and counted), and the positive rule's column always is.
Relative media paths (image_paths, audio_path) are relative to this source folder; they are stored absolute.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data.dataset import Dataset, build_dataset
from recsys.data.schema import REQUIRED_INTERACTION_COLUMNS, PositiveRule
from recsys.errors import DataError

TABLE_NAMES = ("items", "interactions", "users", "queries")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None


def source_files(root: Path) -> list[Path]:
    """The files this adapter reads (a table folder contributes every file under it), for the source fingerprint."""
    out: list[Path] = []
    for name in TABLE_NAMES:
        path = Path(root) / f"{name}.parquet"
        if path.is_dir():
            out.extend(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            out.append(path)
    return out


def _read(path: Path, required: bool = True) -> pd.DataFrame | None:
    if not _exists(path):
        if required:
            raise DataError("file not found", file=str(path))
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt, empty or unreadable files
        raise DataError(f"cannot read parquet ({type(e).__name__}: {e})", file=str(path)) from None


def read_parquet_dataset(root: str | Path, positive: PositiveRule, labels: dict[str, str] | None = None,
                         split_fractions: tuple[float, float] = (0.1, 0.1), unknown_items: str = "error",
                         name: str | None = None, feedback: str = "auto") -> Dataset:
    root = Path(root)
    if not _exists(root) or not root.is_dir():
        raise DataError("source folder not found (or not a folder)", file=str(root))
    items = _read(root / "items.parquet")
    interactions = _read(root / "interactions.parquet")
    if labels is None:
        numeric = [c for c in interactions.columns
                   if c not in REQUIRED_INTERACTION_COLUMNS and pd.api.types.is_numeric_dtype(interactions[c])
                   and interactions[c].notna().all()]
        labels = {c: "label column (inferred)" for c in dict.fromkeys([*numeric, positive.column])
                  if c in interactions.columns}
    if positive.column not in interactions.columns:
        raise DataError(f"positive rule column '{positive.column}' (data.positive.column) not found; found "
                        f"{list(interactions.columns)}", file=str(root / "interactions.parquet"))
    return build_dataset(
        name=name or root.name, source=f"parquet:{root.name}", items=items, interactions=interactions,
        labels=labels, positive=positive, split=split_fractions, users=_read(root / "users.parquet", False),
        queries=_read(root / "queries.parquet", False), unknown_items=unknown_items, feedback=feedback,
        media_root=root, files={t: str(root / f"{t}.parquet") for t in TABLE_NAMES},
    )
