"""Adapter from a trained ranker to the lifetime simulator's Policy protocol.

``Policy.score(day, user_ids [U], candidates [U, C], history) -> scores [U, C]``. The simulator owns the
candidates and the history; the integrator provides ``feature_fn`` that builds, from that history, the same
feature columns the ranker was trained on (typically via features.match_features and the statistics code), one
row per (user, candidate) in ROW-MAJOR order: row ``i * C + j`` is user ``user_ids[i]`` with candidate
``candidates[i, j]``. If the frame has user_id / item_id columns they are checked against that order.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import pandas as pd

FeatureFn = Callable[[int, np.ndarray, np.ndarray, pd.DataFrame], pd.DataFrame]


class Scorer(Protocol):
    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


class RankerPolicy:
    """Scores candidates with `model.predict(feature_fn(day, user_ids, candidates, history))`."""

    def __init__(self, model: Scorer, feature_fn: FeatureFn, name: str | None = None):
        if not hasattr(model, "predict"):
            raise TypeError(f"model must have predict(frame), got {type(model).__name__}")
        self.model, self.feature_fn = model, feature_fn
        self.name = name or type(model).__name__

    def score(self, day: int, user_ids: np.ndarray, candidates: np.ndarray, history: pd.DataFrame) -> np.ndarray:
        user_ids = np.asarray(user_ids)
        candidates = np.asarray(candidates)
        if candidates.ndim != 2 or candidates.shape[0] != user_ids.shape[0]:
            raise ValueError(f"candidates must be [U, C] with U = len(user_ids) = {user_ids.shape[0]}, "
                             f"got shape {candidates.shape}")
        n_users, n_cand = candidates.shape
        if n_users == 0 or n_cand == 0:
            return np.zeros((n_users, n_cand), dtype=np.float64)
        frame = self.feature_fn(day, user_ids, candidates, history)
        if len(frame) != n_users * n_cand:
            raise ValueError(f"feature_fn returned {len(frame)} rows for {n_users} users x {n_cand} candidates")
        if "user_id" in frame.columns and not np.array_equal(frame["user_id"].to_numpy(),
                                                             np.repeat(user_ids, n_cand)):
            raise ValueError("feature_fn rows are not in row-major (user, candidate) order: user_id mismatch")
        if "item_id" in frame.columns and not np.array_equal(frame["item_id"].to_numpy(), candidates.ravel()):
            raise ValueError("feature_fn rows are not in row-major (user, candidate) order: item_id mismatch")
        scores = np.asarray(self.model.predict(frame), dtype=np.float64)
        if scores.shape != (n_users * n_cand,):
            raise ValueError(f"model returned scores of shape {scores.shape}, expected ({n_users * n_cand},)")
        return scores.reshape(n_users, n_cand)
