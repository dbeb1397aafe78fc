"""Labelled examples from the split (ranking/examples.py)."""

from __future__ import annotations

import pytest

from ranking.examples import labelled_examples


def test_examples_synthetic_and_movielens_labels(tiny_dataset):
    ds = tiny_dataset("synthetic")
    valid = labelled_examples(ds, "valid").frame
    assert list(valid.columns) == ["user_id", "item_id", "event_timestamp", "label"]
    assert len(valid) == 3 and valid["event_timestamp"].is_monotonic_increasing
    assert valid["event_timestamp"].min() >= ds.split.train_end
    assert valid["event_timestamp"].max() < ds.split.valid_end
    assert str(valid["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert valid["label"].tolist() == [1, 0, 1]                          # like >= 1 on rows 6, 7, 8
    test = labelled_examples(ds, "test").frame
    assert (test["event_timestamp"] >= ds.split.valid_end).all() and len(test) == 3
    ml = tiny_dataset("movielens")
    assert labelled_examples(ml, "valid").frame["label"].tolist() == [1, 0, 1]  # ratings 5, 3.5, 4 -> rating >= 4
    assert labelled_examples(ml, "test").frame["label"].tolist() == [0, 1, 0]   # 1, 4.5, 2
    with pytest.raises(ValueError, match="period"):
        labelled_examples(ds, "holdout")


def test_examples_max_rows_keeps_whole_users(tiny_dataset):
    ds = tiny_dataset("synthetic")
    allrows = labelled_examples(ds, "train").frame
    sub = labelled_examples(ds, "train", max_rows=4, seed=3).frame
    assert len(sub) == 4                                                  # two whole users of two rows each
    for u, n in sub.groupby("user_id").size().items():
        assert n == (allrows["user_id"] == u).sum()
    assert sub.equals(labelled_examples(ds, "train", max_rows=4, seed=3).frame)
