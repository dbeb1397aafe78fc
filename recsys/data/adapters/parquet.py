"""Users' own data already in the canonical tables: the path a ranking engineer takes.

Expects a folder with items.parquet and interactions.parquet (optional users.parquet, queries.parquet) whose
columns follow recsys.data.schema. Label columns and the positive rule are given by the caller (config), or
inferred: every numeric interaction column other than the ids is a label.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data.dataset import Dataset, build_dataset, write_dataset
from recsys.data.schema import REQUIRED_INTERACTION_COLUMNS, PositiveRule
from recsys.errors import DataError


def _read(path: Path, required: bool = True) -> pd.DataFrame | None:
    if not path.is_file():
        if required:
            raise DataError("file not found", file=str(path))
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read parquet: {e}", file=str(path)) from None


def read_parquet_dataset(root: str | Path, positive: PositiveRule, labels: dict[str, str] | None = None,
                         split_fractions: tuple[float, float] = (0.1, 0.1), unknown_items: str = "error",
                         name: str | None = None) -> Dataset:
    root = Path(root)
    items = _read(root / "items.parquet")
    interactions = _read(root / "interactions.parquet")
    if labels is None:
        numeric = [c for c in interactions.columns
                   if c not in REQUIRED_INTERACTION_COLUMNS and pd.api.types.is_numeric_dtype(interactions[c])]
        labels = {c: "label column (inferred)" for c in dict.fromkeys([*numeric, positive.column])
                  if c in interactions.columns}
    if positive.column not in interactions.columns:
        raise DataError(f"positive rule column '{positive.column}' not found; found {list(interactions.columns)}",
                        file=str(root / "interactions.parquet"))
    return build_dataset(
        name=name or root.name, source=f"parquet:{root.name}", items=items, interactions=interactions,
        labels=labels, positive=positive, split=split_fractions, users=_read(root / "users.parquet", False),
        queries=_read(root / "queries.parquet", False), unknown_items=unknown_items,
        files={t: str(root / f"{t}.parquet") for t in ("items", "interactions", "users", "queries")},
    )


def prepare_parquet(root: str | Path, target: str | Path, positive: PositiveRule, labels: dict[str, str] | None = None,
                    split_fractions: tuple[float, float] = (0.1, 0.1), unknown_items: str = "error") -> Dataset:
    return write_dataset(read_parquet_dataset(root, positive, labels, split_fractions, unknown_items), Path(target))
