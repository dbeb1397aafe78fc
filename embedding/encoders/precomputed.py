"""Precomputed per-modality vectors (items' vec_<modality> columns) passed straight through."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.schema import PRECOMPUTED_VECTOR_PREFIX
from recsys.errors import DataError


def precomputed_vectors(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """name (column without 'vec_') -> [N, D] float32, NaN rows where an item has no vector."""
    out: dict[str, np.ndarray] = {}
    for col in [c for c in items.columns if c.startswith(PRECOMPUTED_VECTOR_PREFIX)]:
        name = col[len(PRECOMPUTED_VECTOR_PREFIX):]
        values = items[col].tolist()
        present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
        if not present:
            continue
        dim = len(present[0])
        arr = np.full((len(values), dim), np.nan, dtype=np.float32)
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            if len(v) != dim:
                raise DataError(f"precomputed vector of length {len(v)}, expected {dim}", column=col,
                                examples=items.iloc[[i]][["item_id"]])
            arr[i] = np.asarray(v, dtype=np.float32)
        out[name] = arr
    return out
