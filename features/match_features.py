"""Match features: similarities between a user's interest profile and a candidate item.

THIS PROJECT'S DEFINITION. The SAIL paper (§4.4.6) reports gains from "SID & embedding match features" in the
ranking model but never defines them. What follows is our own design, written down once:

* embedding match (`EMBEDDING_MATCH_FEATURES`): cosine similarity of the candidate's embedding to the user's
  mean, recency-weighted mean and last positive item; max and weight-averaged cosine over the user's interest
  centroids (PinnerSage-style medoids, see features.interests); the number of the user's N most recent positive
  items whose P-d Matryoshka prefix (FeatureConfig.prefix_dim, as mined into recent_prefix) has cosine
  > SIM_THRESHOLD with the candidate's prefix.
* semantic-ID match (`sid_match_features(L)`, L = FeatureConfig.sid_levels), hierarchical because the IDs come from
  residual quantisation (sid_l only means something given sid_0..sid_{l-1}): for each level l < L,
  - `sid_recent_match_l{l}` = 1 if the candidate's prefix (sid_0..sid_l) equals that of ANY of the user's N most
    recent positive items, else 0;
  - `sid_top_centroid_match_l{l}` = 1 if it equals the prefix of the user's top-weight interest medoid, else 0.

* collaborative score (`COLLABORATIVE_FEATURES`, where FeatureConfig.cf_dim > 0): `cf_score`, the cosine of the ID
  teacher's user and item vectors. It belongs to the baseline (what a production ranker has), not to the match
  features under test, and is defined here so that Feast, retrieval and the simulation compute it the same way.

Missing inputs (unknown user, unknown item, or no history): similarities are NaN (LightGBM treats NaN as missing;
"no information" is not "zero similarity"), counts and matches are 0. Every function takes two aligned frames
(row r of `user` and row r of `item` describe the same example; they may be the same frame) and returns a float64
array with one value per row. The SAME functions run inside the Feast on-demand views (pandas mode, see
features.definitions) and in offline/simulation code (`compute_match_frame`), so the two cannot drift.

Adding a match feature: write one function `f(user, item) -> np.ndarray` and add one line to
EMBEDDING_MATCH_FEATURES (or, for one per SID level, to `sid_match_features`). The on-demand views' output
schemas are derived from these registries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import NamedTuple

import numpy as np
import pandas as pd

from features.schema import CF_ITEM_VECTOR, CF_USER_VECTOR, sid_columns

SIM_THRESHOLD = 0.5
"""Cosine threshold on Matryoshka prefixes for `hist_sim_count`."""

MatchFn = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


# ----------------------------------------------------------------------------------------------- helpers
def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return False


def stack(column: pd.Series, width: int | None = None, dtype=np.float32, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """List-valued column -> ([rows, width] array, present[rows] bool). Missing rows are filled with `fill`.

    Values are cast to float32 first (they are stored as float32), so the online path (python lists of floats)
    and the offline path (numpy arrays from parquet) give bit-identical inputs.
    """
    out, present, inv = _distinct_rows(column, width, dtype, fill)
    return out[inv], present[inv]


# Speed (results are unchanged): the per-row work above runs once per DISTINCT value object. A frame of
# users x candidates (features.inmemory, or a merge) holds the same array object in every row of one user (item),
# so a column is converted once per user, not once per row; row-wise steps (stacking, `_unit`) are done on the
# distinct rows and gathered back, which gives the same bits as doing them row by row. Inside
# `compute_match_frame` these intermediate arrays are also shared by the features that read the same column.
_MEMO: ContextVar[dict | None] = ContextVar("match_features_memo", default=None)


def _memoized(key: tuple, keep: tuple, build: Callable):
    """build() once per key within one compute_match_frame call (outside it: always build)."""
    memo = _MEMO.get()
    if memo is None:
        return build()
    if key not in memo:
        memo[key] = (keep, build())  # keeps the columns alive: the memory addresses in `key` stay theirs
    return memo[key][1]


def _identity(column: pd.Series) -> tuple:
    """The memory a column's values live in (the same for one column read twice from one frame)."""
    a = np.asarray(column.to_numpy())
    return a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str


def _distinct_rows(column: pd.Series, width: int | None, dtype, fill) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """stack() of the column's distinct value objects: ([n, width], present[n], inverse[rows])."""
    def build():
        values = list(column)
        ids = np.fromiter(map(id, values), dtype=np.uint64, count=len(values))
        _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
        out, present = _stack([values[i] for i in first], width, dtype, fill)
        return out, present, inv.reshape(-1)

    return _memoized(("rows", _identity(column), width, np.dtype(dtype).str, fill), (column,), build)


def _stack(values: list, width: int | None, dtype, fill) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([-1 if _is_missing(v) else len(v) for v in values], dtype=np.int64)
    present = lengths > 0
    if width is None:
        width = int(lengths.max()) if present.any() else 0
    out = np.full((len(values), width), fill, dtype=dtype)
    rows = np.flatnonzero(present)
    if len(rows) and (lengths[rows] == width).all():
        # every present value has exactly `width` entries: one vectorised conversion, element for element the
        # same cast as np.asarray(v, dtype) of each row below
        try:
            block = np.asarray([values[r] for r in rows], dtype=dtype)
        except (TypeError, ValueError):
            block = None
        if block is not None and block.shape == (len(rows), width):
            out[rows] = block
            return out, present
    for r in rows:
        a = np.asarray(values[r], dtype=np.float32 if dtype == np.float32 else dtype)
        n = min(len(a), width)
        out[r, :n] = a[:n]
    return out, present


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


class _Rows(NamedTuple):
    """Per-row values without the copy: row r is values[inv[r]]."""

    values: np.ndarray
    inv: np.ndarray


def _unit_rows(column: pd.Series, width: int | None = None, cols: int | None = None,
               shape: tuple | None = None) -> tuple[_Rows, np.ndarray]:
    """(_unit(stack(column, width)[0][:, :cols].reshape(rows, *shape)) as _Rows, present[rows]); the row-wise
    _unit runs once per distinct row."""
    def build():
        out, present, inv = _distinct_rows(column, width, np.float32, 0)
        if cols is not None:
            out = out[:, :cols]
        if shape is not None:
            out = out.reshape(len(out), *shape)
        return _Rows(_unit(out), inv), present[inv]

    return _memoized(("unit", _identity(column), width, cols, shape), (column,), build)


def _einsum_rows(spec: str, a: _Rows, b: _Rows, chunk: int = 2048) -> np.ndarray:
    """np.einsum(spec, a_full, b_full) for row-wise specs ("r..,r..->r.."), gathering `chunk` rows at a time:
    each output row is the same reduction over the same operand rows, without materialising the full
    [rows, ...] float64 operands (hundreds of MB for users x candidates)."""
    n = len(a.inv)
    parts = [np.einsum(spec, a.values[a.inv[lo:lo + chunk]], b.values[b.inv[lo:lo + chunk]])
             for lo in range(0, n, chunk)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else \
        np.einsum(spec, a.values[a.inv], b.values[b.inv])


def _candidate(item: pd.DataFrame) -> tuple[_Rows, np.ndarray]:
    return _unit_rows(item["embedding"])


def _cosine_to(user: pd.DataFrame, item: pd.DataFrame, column: str) -> np.ndarray:
    cand, cand_ok = _candidate(item)
    vec, vec_ok = _unit_rows(user[column], width=cand.values.shape[1])
    out = _einsum_rows("rd,rd->r", vec, cand)
    out[~(cand_ok & vec_ok)] = np.nan
    return out


def _centroid_cosines(user: pd.DataFrame, item: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[rows, K] cosines to each centroid, [rows, K] weights (0 = padding), rows valid."""
    cols = (user["centroids"], user["centroid_weights"], item["embedding"])

    def build():
        cand, cand_ok = _candidate(item)
        d = cand.values.shape[1]
        w, w_ok = stack(user["centroid_weights"], dtype=np.float64)
        k = w.shape[1]
        cents, c_ok = _unit_rows(user["centroids"], width=k * d, shape=(k, d))
        cos = _einsum_rows("rkd,rd->rk", cents, cand)
        valid = cand_ok & w_ok & c_ok & (w.sum(axis=1) > 0) if k else np.zeros(len(cand_ok), bool)
        return cos, w, valid

    return _memoized(("centroid_cosines", *map(_identity, cols)), cols, build)


def _sid_prefix_match(user_sids: np.ndarray, n_per_row: int, levels: int, item: pd.DataFrame, level: int,
                      user_ok: np.ndarray) -> np.ndarray:
    """1 where the candidate's (sid_0..sid_level) equals that of any of the user's n_per_row sid tuples
    (user_sids: [rows, n_per_row * levels])."""
    rows = len(item)
    cand = np.stack([pd.to_numeric(item[c], errors="coerce").to_numpy(np.float64)
                     for c in sid_columns(level + 1)], axis=1)  # [rows, level+1], NaN = unknown item
    if n_per_row == 0:
        return np.zeros(rows)
    hist = user_sids.reshape(rows, n_per_row, levels)[:, :, : level + 1].astype(np.float64)
    real = (hist >= 0).all(axis=2)  # padding is -1
    eq = (hist == cand[:, None, :]).all(axis=2) & real
    out = eq.any(axis=1).astype(np.float64)
    out[~user_ok | np.isnan(cand).any(axis=1)] = 0.0
    return out


# ----------------------------------------------------------------------------------- embedding match features
def cos_mean(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Cosine of the candidate to the user's mean positive-history embedding."""
    return _cosine_to(user, item, "mean_emb")


def cos_recency(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Cosine of the candidate to the user's recency-weighted mean embedding."""
    return _cosine_to(user, item, "recency_emb")


def cos_last(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Cosine of the candidate to the user's last positive item."""
    return _cosine_to(user, item, "last_emb")


def cos_centroid_max(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Max cosine of the candidate over the user's interest centroids."""
    cos, w, valid = _centroid_cosines(user, item)
    out = np.where(w > 0, cos, -np.inf).max(axis=1) if w.shape[1] else np.full(len(item), np.nan)
    out[~valid] = np.nan
    return out


def cos_centroid_wavg(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Interest-weight-averaged cosine of the candidate over the user's interest centroids."""
    cos, w, valid = _centroid_cosines(user, item)
    tot = w.sum(axis=1)
    out = np.divide((cos * w).sum(axis=1), tot, out=np.full(len(item), np.nan), where=tot > 0)
    out[~valid] = np.nan
    return out


def hist_sim_count(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Number of the user's recent positive items with prefix cosine > SIM_THRESHOLD to the candidate."""
    items, _ = stack(user["recent_items"], dtype=np.int64, fill=-1)
    n = items.shape[1]
    if n == 0:  # no user row has a history
        return np.zeros(len(item))
    raw, _, _ = _distinct_rows(user["recent_prefix"], None, np.float32, 0)
    p = raw.shape[1] // n  # prefix length P as mined (FeatureConfig.prefix_dim, checked when the repo writes)
    pref, ok = _unit_rows(user["recent_prefix"], cols=n * p, shape=(n, p))
    cand, cand_ok = _unit_rows(item["embedding"], cols=p)
    if cand.values.shape[1] < p:  # every candidate unknown
        cand = _Rows(np.zeros((1, p)), np.zeros(len(cand.inv), np.int64))
    sims = _einsum_rows("rnd,rd->rn", pref, cand)
    out = ((sims > SIM_THRESHOLD) & (items >= 0)).sum(axis=1).astype(np.float64)
    out[~(ok & cand_ok)] = 0.0
    return out


# ------------------------------------------------------------------------------------ collaborative score
def cf_score(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
    """Cosine of the ID teacher's user vector and the candidate's item vector (NaN when either id is unknown)."""
    cand, cand_ok = _unit_rows(item[CF_ITEM_VECTOR])
    vec, vec_ok = _unit_rows(user[CF_USER_VECTOR], width=cand.values.shape[1])
    out = _einsum_rows("rd,rd->r", vec, cand)
    out[~(cand_ok & vec_ok)] = np.nan
    return out


COLLABORATIVE_FEATURES: dict[str, MatchFn] = {"cf_score": cf_score}
"""The collaborative score of the baseline (FeatureConfig.cf_dim > 0): not a match feature under test, the
signal a production ranker already has."""


# ---------------------------------------------------------------------------------- semantic-ID match features
def _sid_recent(level: int, levels: int) -> MatchFn:
    def f(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
        items, _ = stack(user["recent_items"], dtype=np.int64, fill=-1)
        sids, ok = stack(user["recent_sids"], width=items.shape[1] * levels, dtype=np.int64, fill=-1)
        return _sid_prefix_match(sids, items.shape[1], levels, item, level, ok)
    f.__doc__ = f"1 if the candidate's SID prefix up to level {level} equals any recent history item's, else 0."
    f.__name__ = f"sid_recent_match_l{level}"
    return f


def _sid_top_centroid(level: int, levels: int) -> MatchFn:
    def f(user: pd.DataFrame, item: pd.DataFrame) -> np.ndarray:
        sids, ok = stack(user["centroid_sids"], dtype=np.int64, fill=-1)
        top = sids[:, :levels] if sids.shape[1] >= levels else np.full((len(item), levels), -1)
        return _sid_prefix_match(top, 1, levels, item, level, ok)
    f.__doc__ = f"1 if the candidate's SID prefix up to level {level} equals the top interest medoid's, else 0."
    f.__name__ = f"sid_top_centroid_match_l{level}"
    return f


# ------------------------------------------------------------------------------------------------ registries
EMBEDDING_MATCH_FEATURES: dict[str, MatchFn] = {
    "cos_mean": cos_mean,
    "cos_recency": cos_recency,
    "cos_last": cos_last,
    "cos_centroid_max": cos_centroid_max,
    "cos_centroid_wavg": cos_centroid_wavg,
    "hist_sim_count": hist_sim_count,
}

SIMILARITY_FEATURES = tuple(name for name in EMBEDDING_MATCH_FEATURES if name.startswith("cos_"))
"""The embedding match features that are NaN (not 0) when the user profile or the candidate embedding is missing."""


def sid_match_features(sid_levels: int) -> dict[str, MatchFn]:
    """The semantic-ID match features of items with `sid_levels` levels: recent-history, then top-medoid matches."""
    return {
        **{f"sid_recent_match_l{lvl}": _sid_recent(lvl, sid_levels) for lvl in range(sid_levels)},
        **{f"sid_top_centroid_match_l{lvl}": _sid_top_centroid(lvl, sid_levels) for lvl in range(sid_levels)},
    }


def match_feature_registry(sid_levels: int) -> dict[str, MatchFn]:
    """Every match feature, embedding then semantic-ID, in the order of the on-demand views' schemas."""
    return {**EMBEDDING_MATCH_FEATURES, **sid_match_features(sid_levels)}


def derived_feature_registry(sid_levels: int) -> dict[str, MatchFn]:
    """Every feature an on-demand view computes: the collaborative score, then the match features."""
    return {**COLLABORATIVE_FEATURES, **match_feature_registry(sid_levels)}


def compute_match_frame(user: pd.DataFrame, item: pd.DataFrame, features: Mapping[str, MatchFn]) -> pd.DataFrame:
    """The given match features (name -> function, e.g. `match_feature_registry(L)`) for aligned user/item rows."""
    out = {}
    token = _MEMO.set({})
    try:
        for name, fn in features.items():
            out[name] = np.asarray(fn(user, item), dtype=np.float64)
    finally:
        _MEMO.reset(token)
    return pd.DataFrame(out, index=user.index)


# The functions below are the bodies of the Feast on-demand views. Feast 0.67 re-creates an on-demand view's
# function from its SOURCE TEXT with only `pd`/`np` in scope (feast.transformation.udf_rehydrate), so each body
# imports what it needs itself. Keep them tiny: all logic lives in the registries above.
def match_v1_udf(inputs: pd.DataFrame) -> pd.DataFrame:
    from features.match_features import EMBEDDING_MATCH_FEATURES, compute_match_frame

    return compute_match_frame(inputs, inputs, EMBEDDING_MATCH_FEATURES).reset_index(drop=True)


def sid_match_v1_udf(inputs: pd.DataFrame) -> pd.DataFrame:
    from features.match_features import compute_match_frame, sid_match_features
    from features.schema import sid_levels_of

    # the view's inputs are the item's sid_0..sid_{L-1} as declared from FeatureConfig.sid_levels
    return compute_match_frame(inputs, inputs, sid_match_features(sid_levels_of(inputs.columns))).reset_index(
        drop=True)


def cf_v1_udf(inputs: pd.DataFrame) -> pd.DataFrame:
    from features.match_features import COLLABORATIVE_FEATURES, compute_match_frame

    return compute_match_frame(inputs, inputs, COLLABORATIVE_FEATURES).reset_index(drop=True)
