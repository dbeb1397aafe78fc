"""DLRM inputs from a feature frame: ids -> embedding-table rows, dense features -> a standardised matrix.

scikit-learn does the work, in one ``ColumnTransformer`` fitted on the fit part of the training frame only (so
ids that first appear in the holdout are "unknown" there, as new ids will be at test time):

- ids: ``OrdinalEncoder`` per categorical feature with the training values most frequent first; table row =
  code + 1. Row 0 is "unknown": values never seen in training and missing values (code -1). A feature with more
  distinct values than ``max_rows - 1`` keeps its most frequent ones and maps the others seen in training to one
  shared "infrequent" row (``max_categories``). Ids are compared as int64 when the training column is integral,
  else as strings, so a string id in an integer column is unknown rather than an error.
- dense: counts (training values all >= 0, max above ``log1p_min_max``) get ``log1p``; every column is then
  standardised (``StandardScaler``; std 0 -> 1) and clipped to +-``clip_z``; missing / inf -> 0 (the training
  mean), plus a 0/1 missing indicator for every column that had a missing value in training
  (``SimpleImputer(add_indicator=True)``). Without any dense feature one constant 0 column keeps DenseArch valid;
  without any categorical feature one constant id feature keeps the DLRM's table list non-empty.

Saved with skops (no pickle: loading a saved ranker cannot run code).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, StandardScaler

from recsys.errors import DataError

IdKind = Literal["int", "str"]
CONST_FEATURE = "__const__"
"""Stand-in id feature (one row) and dense column when the frame has none of that kind."""
SKOPS_TRUSTED = ["numpy.clip", "numpy.dtype"]
"""Types our fitted transformer holds beyond what skops trusts by default (a numpy function and dtype objects)."""


def id_kind(col: pd.Series) -> IdKind:
    """'int' for integral columns (floats with only whole values included), else 'str'."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
        return "int"
    if pd.api.types.is_float_dtype(col.dtype):
        v = col.to_numpy(dtype=np.float64, na_value=np.nan)
        v = v[~np.isnan(v)]
        return "int" if np.all(np.isfinite(v)) and np.all(v == np.round(v)) else "str"
    return "str"


def id_keys(col: pd.Series, kind: IdKind) -> np.ndarray:
    """[N] object array of the ids as Python ints (kind 'int') or strings; NaN where missing or not of `kind`."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    keys = np.full(len(col), np.nan, dtype=object)
    if kind == "str":
        ok = col.notna().to_numpy()
        keys[ok] = col[ok].astype(str).to_numpy()
        return keys
    num = pd.to_numeric(col, errors="coerce")
    v = num.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(v)
    ok[ok] = v[ok] == np.round(v[ok])
    exact = num.to_numpy()[ok] if pd.api.types.is_integer_dtype(num.dtype) else v[ok]  # exact for large int64 ids
    keys[ok] = exact.astype(np.int64).tolist()
    return keys


def dense_values(frame: pd.DataFrame, col: str) -> np.ndarray:
    """[N] float64 values of a dense feature, NaN for missing and infinite ones."""
    try:
        x = pd.to_numeric(frame[col], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataError(f"dense feature is not numeric ({exc}); list it as categorical if it is an id",
                        column=col, examples=frame[[col]]) from None
    x = x.copy()
    x[~np.isfinite(x)] = np.nan
    return x


def _count_scaler() -> Pipeline:
    return Pipeline([("nonnegative", FunctionTransformer(np.clip, kw_args={"a_min": 0.0, "a_max": None},
                                                         feature_names_out="one-to-one")),
                      ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
                      ("scale", StandardScaler())])


def _dense_pipeline(dense: list[str], counts: list[str], clip_z: float) -> Pipeline:
    """Per column (in feature order) log1p for counts and StandardScaler, then the clip and the imputer."""
    per_column = [(c, _count_scaler() if c in counts else StandardScaler(), [c]) for c in dense]
    return Pipeline([
        ("scale", ColumnTransformer(per_column, verbose_feature_names_out=False)),
        ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -clip_z, "a_max": clip_z},
                                     feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True)),
    ])


def _by_frequency(keys: np.ndarray) -> np.ndarray:
    """The non-missing values of `keys`, most frequent first, ties by value: independent of row order."""
    values = pd.Series(keys[~pd.isna(keys)])
    counts = values.value_counts(sort=False)
    table = pd.DataFrame({"v": counts.index, "n": counts.to_numpy()})
    return table.sort_values(["n", "v"], ascending=[False, True], kind="stable")["v"].to_numpy(dtype=object)


class DLRMPreprocessor:
    """Feature frame -> (dense float32 [N, n_dense], table rows int64 [N, n_sparse]); see the module docstring."""

    def __init__(self, categorical: Sequence[str], dense: Sequence[str], max_rows: int = 100_000,
                 log1p_min_max: float = 50.0, clip_z: float = 10.0):
        if max_rows < 3:
            raise ValueError(f"max_rows must be >= 3 (unknown row + at least 2 values), got {max_rows}")
        self.categorical, self.dense = list(categorical), list(dense)
        self.max_rows, self.log1p_min_max, self.clip_z = int(max_rows), float(log1p_min_max), float(clip_z)
        self.kinds: dict[str, IdKind] = {}
        self.transformer: ColumnTransformer | None = None

    @property
    def sparse_keys(self) -> list[str]:
        """The KJT keys, one per table."""
        return self.categorical or [CONST_FEATURE]

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in (*self.categorical, *self.dense) if c not in frame.columns]
        if missing:
            raise DataError(f"frame lacks feature columns {missing}; it has {list(frame.columns)}", column=missing[0])
        cols = {c: id_keys(frame[c], self.kinds[c]) for c in self.categorical}
        cols.update({c: dense_values(frame, c) for c in self.dense})
        return pd.DataFrame(cols, index=frame.index)

    def fit(self, part: pd.DataFrame) -> DLRMPreprocessor:
        self.kinds = {c: id_kind(part[c]) for c in self.categorical}
        X = self._inputs(part)
        counts = [c for c in self.dense if _is_count(X[c].to_numpy(np.float64), self.log1p_min_max)]
        parts = []
        if self.categorical:
            categories = [_by_frequency(X[c].to_numpy()) for c in self.categorical]
            empty = [c for c, values in zip(self.categorical, categories) if not len(values)]
            if empty:
                raise DataError("categorical feature has no value in the training rows", column=empty[0])
            parts.append(("ids", OrdinalEncoder(categories=categories, handle_unknown="use_encoded_value",
                                                unknown_value=-1, encoded_missing_value=-1,
                                                max_categories=self.max_rows - 1), self.categorical))
        if self.dense:
            parts.append(("dense", _dense_pipeline(self.dense, counts, self.clip_z), self.dense))
        self.transformer = ColumnTransformer(parts, sparse_threshold=0.0).fit(X)
        return self

    def _fitted(self) -> ColumnTransformer:
        if self.transformer is None:
            raise RuntimeError("DLRMPreprocessor is not fitted")
        return self.transformer

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(dense float32 [N, len(dense_names)], table rows int64 [N, len(sparse_keys)])."""
        n, n_ids = len(frame), len(self.categorical)
        X = self._fitted().transform(self._inputs(frame)) if n else np.zeros((0, n_ids + len(self.dense_names)))
        ids = X[:, :n_ids].astype(np.int64) + 1 if n_ids else np.zeros((n, 1), dtype=np.int64)
        dense = X[:, n_ids:].astype(np.float32) if self.dense else np.zeros((n, 1), dtype=np.float32)
        return dense, ids

    @property
    def dense_names(self) -> list[str]:
        """Names of the dense matrix's columns (standardised features, then missing indicators)."""
        if not self.dense:
            return [CONST_FEATURE]
        return list(self._fitted().named_transformers_["dense"].get_feature_names_out())

    @property
    def table_sizes(self) -> dict[str, int]:
        """Rows per table: unknown row + one per kept value (+ the shared infrequent row where values were cut)."""
        if not self.categorical:
            return {CONST_FEATURE: 1}
        enc: OrdinalEncoder = self._fitted().named_transformers_["ids"]
        sizes = {}
        for c, cats, rare in zip(self.categorical, enc.categories_, enc.infrequent_categories_):
            seen = sum(1 for v in cats if not (isinstance(v, float) and np.isnan(v)))
            sizes[c] = 1 + seen if rare is None else 2 + seen - len(rare)
        return sizes

    def save(self, path: str | Path) -> None:
        sio.dump({"categorical": self.categorical, "dense": self.dense, "max_rows": self.max_rows,
                  "log1p_min_max": self.log1p_min_max, "clip_z": self.clip_z, "kinds": self.kinds,
                  "transformer": self._fitted()}, path)

    @classmethod
    def load(cls, path: str | Path) -> DLRMPreprocessor:
        state = sio.load(path, trusted=SKOPS_TRUSTED)
        pre = cls(state["categorical"], state["dense"], state["max_rows"], state["log1p_min_max"], state["clip_z"])
        pre.kinds, pre.transformer = state["kinds"], state["transformer"]
        return pre


def _is_count(x: np.ndarray, log1p_min_max: float) -> bool:
    v = x[~np.isnan(x)]
    return bool(len(v) and v.min() >= 0 and v.max() > log1p_min_max)
