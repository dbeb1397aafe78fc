"""Trained rankers as the lifetime simulator's policies.

``Policy.score(day, user_ids [U], candidates [U, C], history) -> scores [U, C]``. The simulator owns the
candidates and the history; a ``feature_fn`` builds, from that history, the same feature columns the ranker was
trained on, one row per (user, candidate) in ROW-MAJOR order: row ``i * C + j`` is user ``user_ids[i]`` with
candidate ``candidates[i, j]``. If the frame has user_id / item_id columns they are checked against that order.

`set_feature_fn` is that function for an embedding set: `features.inmemory.InMemoryFeatures` applies the same
builders, match functions and defaults as the Feast path, at the day's snapshot (midnight: the daily
point-in-time snapshots the rankers were trained on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from features.definitions import FULL_SERVICE
from features.inmemory import InMemoryFeatures
from features.interests import InterestConfig
from features.repo import FeatureRepo
from features.serving import service_layout
from features.statistics import StatsConfig
from ranking.embedding_sets import EmbeddingSet, set_columns, set_of_variant
from ranking.simulate import Policy, PopularityPolicy, RandomPolicy
from recsys.data.schema import PositiveRule
from recsys.world.generator import World

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


def set_feature_fn(world: World, embedding_set: EmbeddingSet, service_features: dict[str, list[str]],
                   positive: PositiveRule, interest_cfg: InterestConfig, stats_cfg: StatsConfig) -> FeatureFn:
    """Features of an embedding set's full FeatureService from the simulated history, named as in training."""
    repo = FeatureRepo(embedding_set.repo_dir)
    paths = repo.paths()
    collaborative = (pd.read_parquet(paths["user_cf"]), pd.read_parquet(paths["item_cf"])) if repo.cfg.cf_dim else None
    builder = InMemoryFeatures(pd.read_parquet(embedding_set.item_embeddings), positive,
                               service_layout(repo.store, FULL_SERVICE), repo.cfg, interest_cfg, stats_cfg,
                               collaborative)
    rename = set_columns(service_features, embedding_set.suffix)

    def feature_fn(day: int, user_ids: np.ndarray, candidates: np.ndarray, history: pd.DataFrame) -> pd.DataFrame:
        frame = builder.frame(world.timestamp(day).floor("D"), user_ids, candidates, history)
        return frame.rename(columns=rename)

    return feature_fn


def lifetime_policies(world: World, rankers: Mapping[str, Scorer], sets: Sequence[EmbeddingSet],
                      features_by_set: Mapping[str, dict[str, list[str]]], positive: PositiveRule,
                      interest_cfg: InterestConfig, stats_cfg: StatsConfig, seed: int = 0) -> dict[str, Policy]:
    """random and popularity references, then one RankerPolicy per variant on its embedding set's features."""
    feature_fns = {s.name: set_feature_fn(world, s, features_by_set[s.name], positive, interest_cfg, stats_cfg)
                   for s in sets}
    policies: dict[str, Policy] = {"random": RandomPolicy(seed=seed), "popularity": PopularityPolicy()}
    for variant, ranker in rankers.items():
        policies[variant] = RankerPolicy(ranker, feature_fns[set_of_variant(variant, sets).name], name=variant)
    return policies
