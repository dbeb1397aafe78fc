"""Precomputed per-modality vectors (items' vec_<modality> columns) passed straight through.

A vector that is present must be usable as it is: one length per column and finite numbers. Anything else is the
user's data, so it stops the run naming the column and the item (a silently zeroed or skipped vector would
change the item's embedding without a trace).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.schema import PRECOMPUTED_VECTOR_PREFIX
from recsys.errors import DataError


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _as_vector(v: object, col: str, items: pd.DataFrame, row: int) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or len(arr) == 0:
        raise DataError(f"precomputed vector is not a non-empty list of numbers (got {type(v).__name__})", column=col,
                        examples=items.iloc[[row]][["item_id"]])
    return arr


def precomputed_vectors(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """name (column without 'vec_') -> [N, D] float32, NaN rows where an item has no vector."""
    out: dict[str, np.ndarray] = {}
    for col in [c for c in items.columns if c.startswith(PRECOMPUTED_VECTOR_PREFIX)]:
        name = col[len(PRECOMPUTED_VECTOR_PREFIX):]
        values = items[col].tolist()
        present = [i for i, v in enumerate(values) if not _missing(v)]
        if not present:
            continue
        dim = len(_as_vector(values[present[0]], col, items, present[0]))
        arr = np.full((len(values), dim), np.nan, dtype=np.float32)
        for i in present:
            v = _as_vector(values[i], col, items, i)
            if len(v) != dim:
                raise DataError(f"precomputed vector of length {len(v)}, expected {dim}", column=col,
                                examples=items.iloc[[i]][["item_id"]])
            if not np.isfinite(v).all():
                raise DataError(f"precomputed vector of item_id {int(items['item_id'].iloc[i])} has "
                                f"{int((~np.isfinite(v)).sum())} non-finite value(s); give finite numbers or leave "
                                "the whole vector empty (missing)", column=col, examples=items.iloc[[i]][["item_id"]])
            arr[i] = v
        out[name] = arr
    return out
