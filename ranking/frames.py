"""Point-in-time ranking frames: labelled valid/test examples joined with each embedding set's Feast features.

Rankers train on the valid period and are evaluated on the test period (`ranking.examples`); every feature is
joined as of the example's time (`features.repo.FeatureRepo.historical`). One retrieval per embedding set serves
every variant (the full FeatureService, `features.definitions.FULL_SERVICE`) and covers valid and test together:
the file store's cost is mostly per call, not per row. A secondary set's embedding-derived columns get its
suffix (`ranking.embedding_sets.set_columns`), so all sets share one frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.definitions import FULL_SERVICE, SERVICE_BY_VARIANT
from features.repo import FeatureRepo
from features.serving import service_layout
from ranking.embedding_sets import EmbeddingSet, set_columns
from ranking.examples import labelled_examples
from recsys.data.dataset import Dataset
from recsys.io import atomic_file

UNKNOWN_FLAGS = ("unknown_user", "unknown_item")


@dataclass
class RankingFrames:
    train: pd.DataFrame                                  # valid-period examples with features
    test: pd.DataFrame                                   # test-period examples with features
    features_by_set: dict[str, dict[str, list[str]]]     # set name -> variant -> its FeatureService's columns

    def save(self, directory: str | Path) -> None:
        """train_frame.parquet and test_frame.parquet (atomic writes)."""
        for name, frame in (("train_frame", self.train), ("test_frame", self.test)):
            with atomic_file(Path(directory) / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp)


def service_features(store: FeatureStore) -> dict[str, list[str]]:
    """variant -> the columns of its FeatureService, in service order."""
    return {variant: service_layout(store, service)["order"] for variant, service in SERVICE_BY_VARIANT.items()}


def point_in_time_frames(ds: Dataset, sets: Sequence[EmbeddingSet], max_train_rows: int | None = None,
                         max_test_rows: int | None = None, seed: int = 0,
                         engine: Literal["feast", "asof"] = "feast") -> RankingFrames:
    """Valid (training) and test frames with every set's features; `max_*_rows` subsample whole users (seeded)."""
    examples = pd.concat([
        labelled_examples(ds, "valid", max_rows=max_train_rows, seed=seed).assign(period="valid"),
        labelled_examples(ds, "test", max_rows=max_test_rows, seed=seed).assign(period="test"),
    ], ignore_index=True)
    frame, features_by_set = examples.copy(), {}
    for s in sets:
        repo = FeatureRepo(s.repo_dir)
        feats = service_features(repo.store)
        features_by_set[s.name] = feats
        rename = set_columns(feats, s.suffix)
        got = repo.historical(examples, FULL_SERVICE, engine=engine)
        for c in feats["match_sid"]:
            if c not in frame.columns or c in rename:
                frame[rename.get(c, c)] = got[c].to_numpy()
        for flag in UNKNOWN_FLAGS:
            frame[f"{flag}{s.suffix}"] = got[flag].to_numpy()
    split = {p: frame.loc[frame["period"] == p].drop(columns="period").reset_index(drop=True)
             for p in ("valid", "test")}
    return RankingFrames(split["valid"], split["test"], features_by_set)


def cold_item_rows(ds: Dataset, test: pd.DataFrame) -> np.ndarray:
    """Test rows whose item is first seen in the test period (no interaction before valid_end): bool [len(test)]."""
    seen = ds.interactions.loc[ds.interactions["timestamp"] < ds.split.valid_end, "item_id"].unique()
    return ~test["item_id"].isin(seen).to_numpy()
