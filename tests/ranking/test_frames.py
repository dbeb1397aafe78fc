"""Ranking frames (ranking/frames.py): the cold-item segment and the frames' files.

The Feast point-in-time retrieval itself is exercised end to end by tests/recsys/test_pipeline.py (and its
equivalence to the in-memory features by the feature tests).
"""

from __future__ import annotations

import pandas as pd

from ranking.examples import labelled_examples
from ranking.frames import RankingFrames, cold_item_rows


def test_cold_items_are_first_seen_in_the_test_period(tiny_dataset):
    ds = tiny_dataset("synthetic")
    test = labelled_examples(ds, "test")
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
