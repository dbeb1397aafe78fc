"""Ranking frames (ranking/frames.py): the cold-item segment, the coverage guard and the frames' files.

The Feast point-in-time retrieval itself is exercised end to end by tests/recsys/test_pipeline.py (and its
equivalence to the in-memory features by the feature tests).
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from ranking.examples import labelled_examples
from ranking.frames import RankingFrames, check_coverage, cold_item_rows
from ranking.negatives import NegativeCounts, NegativeSamplingConfig
from recsys.errors import DataError


def test_cold_items_are_first_seen_in_the_test_period(tiny_dataset):
    ds = tiny_dataset("synthetic")
    test = labelled_examples(ds, "test").frame
    extra = test.head(2).assign(item_id=[99, 98])                         # never interacted with before
    frame = pd.concat([test, extra], ignore_index=True)
    cold = cold_item_rows(ds, frame)
    before = set(ds.interactions.loc[ds.interactions["timestamp"] < ds.split.valid_end, "item_id"])
    assert cold.tolist() == [i not in before for i in frame["item_id"]]
    assert cold[-2:].all()


def test_frames_save_both_periods(tmp_path, frames):
    train, test = frames
    RankingFrames(train, test, {}).save(tmp_path / "ranking")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ranking" / "train_frame.parquet"), train)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ranking" / "test_frame.parquet"), test)
    assert sorted(p.name for p in (tmp_path / "ranking").iterdir()) == ["test_frame.parquet", "train_frame.parquet"]


def _coverage(unknown_item: float, unknown_user: float, no_match: float) -> dict[str, float]:
    return {"rows": 100, "unknown_user": unknown_user, "unknown_item": unknown_item, "no_match_features": no_match}


def test_nearly_featureless_frames_are_refused_naming_the_cause(caplog):
    with pytest.raises(DataError, match=r"set 'primary', test period: 96.0% of 100 examples have no features.*"
                                        r"created_at later than their interactions"):
        check_coverage(_coverage(0.0, 0.1, 0.96), "primary", "test")
    with pytest.raises(DataError, match=r"unknown user 97.0%.*empty history window.*data\.split"):
        check_coverage(_coverage(0.0, 0.97, 0.97), "primary", "valid")
    with caplog.at_level(logging.WARNING, logger="ranking.frames"):
        check_coverage(_coverage(0.6, 0.0, 0.0), "content", "valid")
        check_coverage(_coverage(0.5, 0.5, 0.5), "content", "test")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "'content', valid period: 60.0% of 100 examples have no features (unknown item 60.0%" in caplog.text


def test_sampling_becomes_flat_mlflow_params(frames):
    train, test = frames
    counts = {p: NegativeCounts(p, 10, 19, 1, "popularity", 2).as_dict() for p in ("valid", "test")}
    sampled = RankingFrames(train, test, {}, {**NegativeSamplingConfig(k=2).model_dump(), **counts})
    assert sampled.negatives_params() == {
        "negatives.strategy": "popularity", "negatives.k": 2, "negatives.window_days": 7.0, "negatives.exclude": True,
        "negatives.seed": 0, **{f"negatives.{p}.{k}": v for p in ("valid", "test")
                                for k, v in (("positives", 10), ("negatives", 19), ("unfilled", 1),
                                             ("strategy", "popularity"), ("k", 2))}}
    assert RankingFrames(train, test, {}).negatives_params() == {}
