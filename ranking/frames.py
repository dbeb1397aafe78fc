"""Point-in-time ranking frames: labelled valid/test examples joined with each embedding set's Feast features.

Rankers train on the valid period and are evaluated on the test period (`ranking.examples`); every feature is
joined as of the example's time (`features.repo.FeatureRepo.historical`). One retrieval per embedding set serves
every variant (the full FeatureService, `features.definitions.FULL_SERVICE`) and covers valid and test together:
the file store's cost is mostly per call, not per row. A secondary set's embedding-derived columns get its
suffix (`ranking.embedding_sets.set_columns`), so all sets share one frame.

Coverage guard: a frame where nearly every example lacks features (unknown item or user, every match similarity
NaN: `features.coverage.coverage`) trains rankers on defaults and reports AUC 0.5 as if it were a result. When
`FAIL_FEATURELESS` of a period's examples lack one of these, the frames are refused (DataError naming the
fractions and the likely cause); above `WARN_FEATURELESS` a WARNING says the same and the run goes on (a
cold-start-heavy period can still be meaningful).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.coverage import coverage as feature_coverage
from features.definitions import FULL_SERVICE, SERVICE_BY_VARIANT
from features.repo import FeatureRepo
from features.serving import service_layout
from ranking.embedding_sets import EmbeddingSet, set_columns
from ranking.examples import labelled_examples
from ranking.negatives import NegativeSamplingConfig
from recsys.data.dataset import Dataset
from recsys.errors import DataError
from recsys.io import atomic_file

logger = logging.getLogger(__name__)

UNKNOWN_FLAGS = ("unknown_user", "unknown_item")
FAIL_FEATURELESS = 0.95
"""Fraction of a period's examples without features at which the frames are refused."""
WARN_FEATURELESS = 0.5
"""Fraction above which a WARNING names the cause and the run goes on."""


@dataclass
class RankingFrames:
    train: pd.DataFrame                                  # valid-period examples with features
    test: pd.DataFrame                                   # test-period examples with features
    features_by_set: dict[str, dict[str, list[str]]]     # set name -> variant -> its FeatureService's columns
    negatives: dict = field(default_factory=dict)      # implicit: the sampling config + period -> NegativeCounts
    coverage: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # set -> period -> coverage()

    def negatives_params(self) -> dict[str, str | int | float | bool]:
        """The sampling as flat MLflow params (negatives.strategy, negatives.valid.negatives, ...); {} if none."""
        out: dict[str, str | int | float | bool] = {}
        for key, value in self.negatives.items():
            if isinstance(value, dict):
                out.update({f"negatives.{key}.{k}": v for k, v in value.items() if k != "period"})
            else:
                out[f"negatives.{key}"] = value
        return out

    def save(self, directory: str | Path) -> None:
        """train_frame.parquet and test_frame.parquet (atomic writes)."""
        for name, frame in (("train_frame", self.train), ("test_frame", self.test)):
            with atomic_file(Path(directory) / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp)


def service_features(store: FeatureStore) -> dict[str, list[str]]:
    """variant -> the columns of its FeatureService, in service order."""
    return {variant: service_layout(store, service)["order"] for variant, service in SERVICE_BY_VARIANT.items()}


def check_coverage(coverage: dict[str, float], set_name: str, period: str) -> None:
    """DataError when FAIL_FEATURELESS of the examples lack one feature source (unknown user, unknown item, or
    every match similarity NaN: `features.coverage.coverage`), a WARNING above WARN_FEATURELESS (module doc)."""
    share = max(coverage["unknown_user"], coverage["unknown_item"], coverage["no_match_features"])
    if share <= WARN_FEATURELESS:
        return
    if coverage["unknown_user"] == share:
        cause = ("no user has history before the examples: an empty history window (timestamps collapsed into one "
                 "period, or an empty train period: check the timestamps and data.split)")
    else:
        cause = ("the items' features become available after the examples: item created_at later than their "
                 "interactions (content is available from Dataset.item_available_at), or items without an "
                 "embedding")
    text = (f"embedding set '{set_name}', {period} period: {share:.1%} of {coverage['rows']} examples have no "
            f"features (unknown item {coverage['unknown_item']:.1%}, unknown user {coverage['unknown_user']:.1%}, "
            f"every match similarity NaN {coverage['no_match_features']:.1%}); likely cause: {cause}")
    if share >= FAIL_FEATURELESS:
        raise DataError(f"{text}. Rankers would learn nothing from these frames.")
    logger.warning("%s. The comparison goes on but measures little.", text)


def point_in_time_frames(ds: Dataset, sets: Sequence[EmbeddingSet], max_train_rows: int | None = None,
                         max_test_rows: int | None = None, seed: int = 0,
                         engine: Literal["feast", "asof"] = "feast",
                         negatives: NegativeSamplingConfig | None = None) -> RankingFrames:
    """Valid (training) and test frames with every set's features; `max_*_rows` subsample whole users (seeded).

    Implicit-feedback datasets get `negatives` sampled negatives in both periods (`ranking.examples`); the frames
    are refused when a period is of one class (before any retrieval) or nearly featureless (module doc).
    """
    valid = labelled_examples(ds, "valid", max_rows=max_train_rows, seed=seed, negatives=negatives)
    test = labelled_examples(ds, "test", max_rows=max_test_rows, seed=seed, negatives=negatives)
    sampled = {}
    if valid.negatives is not None and test.negatives is not None:
        sampled = {**(negatives or NegativeSamplingConfig()).model_dump(), "valid": valid.negatives.as_dict(),
                   "test": test.negatives.as_dict()}
    examples = pd.concat([valid.frame.assign(period="valid"), test.frame.assign(period="test")], ignore_index=True)
    frame, features_by_set, coverage = examples.copy(), {}, {}
    for s in sets:
        repo = FeatureRepo(s.repo_dir)
        feats = service_features(repo.store)
        features_by_set[s.name] = feats
        rename = set_columns(feats, s.suffix)
        got = repo.historical(examples, FULL_SERVICE, engine=engine)
        coverage[s.name] = {p: feature_coverage(got.loc[(examples["period"] == p).to_numpy()])
                            for p in ("valid", "test")}
        for p, cov in coverage[s.name].items():
            check_coverage(cov, s.name, p)
        for c in feats["match_sid"]:
            if c not in frame.columns or c in rename:
                frame[rename.get(c, c)] = got[c].to_numpy()
        for flag in UNKNOWN_FLAGS:
            frame[f"{flag}{s.suffix}"] = got[flag].to_numpy()
        del got  # its columns are copied: the next set's retrieval runs without this one's whole frame
    split = {p: frame.loc[frame["period"] == p].drop(columns="period").reset_index(drop=True)
             for p in ("valid", "test")}
    return RankingFrames(split["valid"], split["test"], features_by_set, sampled, coverage)


def cold_item_rows(ds: Dataset, test: pd.DataFrame) -> np.ndarray:
    """Test rows whose item is first seen in the test period (no interaction before valid_end): bool [len(test)]."""
    seen = ds.interactions.loc[ds.interactions["timestamp"] < ds.split.valid_end, "item_id"].unique()
    return ~test["item_id"].isin(seen).to_numpy()
