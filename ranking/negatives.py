"""Negative sampling for implicit-feedback datasets: the impressions a positives-only log does not have.

A positives-only log (purchases, plays, clicks without impressions) has no label 0, so every ranking example
would be positive and AUC undefined. For such a dataset (manifest ``feedback: implicit``) every positive example
(user u, item i, time t) of the valid (training) and test periods gets ``k`` sampled negatives (u, j, t, label 0),
built by ``ranking.examples.labelled_examples`` for both periods alike. Datasets with real impressions
(``feedback: explicit``) keep their logged rows and are never sampled.

Options (``ranking.negatives`` in the run config, `NegativeSamplingConfig`):

- ``strategy``: which items j are drawn, always among the items live at t (``Dataset.item_available_at() <= t``):
  - ``uniform``: every live item equally likely;
  - ``popularity`` (default): live items in proportion to 1 + their interactions strictly before t (add-one, so
    a live item nobody has touched yet can still be drawn);
  - ``window_popularity``: the same over the interactions in [t - ``window_days``, t) only (popular now).
- ``k`` (default 4): negatives per positive, distinct items for one positive.
- ``window_days`` (default 7): the window of ``window_popularity``.
- ``exclude`` (default true): never draw the positive itself or an item the user interacted with at or before t
  (a later interaction does not count: at t it is not known). Off: no item is excluded.
- ``seed``: the run's seed unless set; the valid and test periods draw from separate streams of it, so the
  negatives are the same on every run with the same data and seed.

Point in time: popularity counts only interactions strictly before t, so a valid-period example's negatives never
depend on the test period. A positive for which fewer than ``k`` eligible items exist gets what there is; the
shortfall is counted (``unfilled``) and logged as a WARNING. Nothing else reads these rows: embeddings, teachers,
interests, statistics and the Feast sources are built from ``ds.interactions`` alone.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

MAX_ROUNDS = 64
"""Rejection rounds before a slot counts as unfilled (each round redraws only the rejected slots)."""
US_PER_DAY = 86_400 * 1_000_000


class NegativeSamplingConfig(BaseModel):
    """How implicit-feedback examples get their negatives (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["uniform", "popularity", "window_popularity"] = Field(
        "popularity", description="uniform | popularity (1 + interactions before t) | window_popularity")
    k: int = Field(4, ge=1, description="negatives per positive")
    window_days: float = Field(7.0, gt=0, description="popularity window of window_popularity, in days")
    exclude: bool = Field(True, description="never draw the positive or an item the user interacted with by t")
    seed: int = 0


@dataclass(frozen=True)
class NegativeCounts:
    """What sampling did for one period (the run summary and MLflow params show it)."""

    period: str
    positives: int
    negatives: int
    unfilled: int            # slots of k per positive that found no eligible item
    strategy: str
    k: int

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def _micros(values) -> np.ndarray:
    """[N] int64 microseconds since the epoch (UTC) of datetime-like values."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("us").asi8


class _FirstSeen:
    """When each user first interacted with each item, for "interacted with at or before t" lookups."""

    def __init__(self, interactions: pd.DataFrame, item_index: pd.Index):
        first = interactions.groupby(["user_id", "item_id"], sort=False)["timestamp"].min()
        self.users = pd.Index(first.index.get_level_values("user_id").unique())
        self.n_items = len(item_index)
        keys = self._keys(first.index.get_level_values("user_id").to_numpy(np.int64),
                          item_index.get_indexer(first.index.get_level_values("item_id")))
        order = np.argsort(keys, kind="stable")
        self.keys, self.times = keys[order], _micros(first.to_numpy())[order]

    def _keys(self, users: np.ndarray, item_codes: np.ndarray) -> np.ndarray:
        codes = self.users.get_indexer(users)
        return np.where((codes >= 0) & (item_codes >= 0), codes * self.n_items + item_codes, -1)

    def by(self, users: np.ndarray, item_codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """[N] bool: user interacted with the item at or before t."""
        keys = self._keys(users, item_codes)
        at = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool)
        return (keys >= 0) & (self.keys[at] == keys) & (self.times[at] <= t)


def _spans(log_t: np.ndarray, t: np.ndarray, cfg: NegativeSamplingConfig) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) of the log rows whose items carry each slot's popularity weight (empty for uniform)."""
    hi = np.searchsorted(log_t, t, side="left")                        # strictly before t
    if cfg.strategy == "uniform":
        return hi, hi
    if cfg.strategy == "window_popularity":
        return np.searchsorted(log_t, t - round(cfg.window_days * US_PER_DAY), side="left"), hi
    return np.zeros_like(hi), hi


def _draw(rng: np.random.Generator, n_live: np.ndarray, lo: np.ndarray, hi: np.ndarray, live_items: np.ndarray,
          log_items: np.ndarray) -> np.ndarray:
    """One candidate per slot: a live item with weight 1 (uniform part) or the item of a log row in [lo, hi)
    (weight = its count there): P(item) = (1 + count) / (n_live + hi - lo)."""
    span = hi - lo
    from_live = rng.random(len(n_live)) * (n_live + span) < n_live
    r = rng.random(len(n_live))
    live_at = np.minimum((r * n_live).astype(np.int64), np.maximum(n_live - 1, 0))
    log_at = lo + np.minimum((r * span).astype(np.int64), np.maximum(span - 1, 0))
    return np.where(from_live, live_items[np.minimum(live_at, len(live_items) - 1)],
                    log_items[np.minimum(log_at, max(len(log_items) - 1, 0))] if len(log_items) else -1)


def sample_negatives(interactions: pd.DataFrame, available_at: pd.Series, positives: pd.DataFrame,
                     cfg: NegativeSamplingConfig, period: str, stream: int
                     ) -> tuple[pd.DataFrame, NegativeCounts]:
    """Negatives for `positives` (user_id, item_id, event_timestamp) and the counts.

    Returns DataFrame[user_id int64, item_id int64, event_timestamp (the positive's), label int8 = 0], up to k rows
    per positive in positive order. interactions: the whole log (user_id, item_id, timestamp); available_at:
    item_id -> the time the item is live from; stream: this period's random stream (periods are independent).
    """
    k, n = cfg.k, len(positives)
    item_index = pd.Index(available_at.index.to_numpy(dtype=np.int64))
    live_from_all = _micros(available_at.to_numpy())
    order = np.argsort(live_from_all, kind="stable")
    live_items, live_from = item_index.to_numpy()[order], live_from_all[order]
    log_times = _micros(interactions["timestamp"].to_numpy())
    log_order = np.argsort(log_times, kind="stable")
    log_t, log_items = log_times[log_order], interactions["item_id"].to_numpy(np.int64)[log_order]

    slot_pos = np.repeat(np.arange(n), k)
    t = np.repeat(_micros(positives["event_timestamp"].to_numpy()), k)
    users = np.repeat(positives["user_id"].to_numpy(np.int64), k)
    own = np.repeat(positives["item_id"].to_numpy(np.int64), k)
    n_live = np.searchsorted(live_from, t, side="right")
    lo, hi = _spans(log_t, t, cfg)
    seen = _FirstSeen(interactions, item_index) if cfg.exclude else None

    rng = np.random.default_rng([cfg.seed, stream])
    chosen = np.full(n * k, -1, dtype=np.int64)
    taken = np.zeros(0, dtype=np.int64)                                # (positive, item) keys already drawn
    pending = np.flatnonzero(n_live > 0)
    for _ in range(MAX_ROUNDS):
        if not len(pending):
            break
        cand = _draw(rng, n_live[pending], lo[pending], hi[pending], live_items, log_items)
        codes = item_index.get_indexer(cand)
        ok = (codes >= 0) & (live_from_all[codes] <= t[pending])
        if seen is not None:
            ok &= (cand != own[pending]) & ~seen.by(users[pending], codes, t[pending])
        key = slot_pos[pending] * len(item_index) + codes
        ok &= ~np.isin(key, taken)
        first = np.flatnonzero(ok)
        ok[first[pd.Series(key[first]).duplicated().to_numpy()]] = False
        chosen[pending[ok]] = cand[ok]
        taken = np.concatenate([taken, key[ok]])
        pending = pending[~ok]

    filled = chosen >= 0
    out = pd.DataFrame({"user_id": users[filled], "item_id": chosen[filled],
                        "event_timestamp": pd.to_datetime(t[filled], unit="us", utc=True),
                        "label": np.zeros(int(filled.sum()), dtype=np.int8)})
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[us, UTC]")
    counts = NegativeCounts(period, n, int(filled.sum()), int((~filled).sum()), cfg.strategy, k)
    if counts.unfilled:
        logger.warning("negative sampling (%s period): %d of %d slots (k=%d per positive) found no eligible item "
                       "(strategy %s, exclude=%s): those positives have fewer negatives", period, counts.unfilled,
                       n * k, k, cfg.strategy, cfg.exclude)
    return out, counts
