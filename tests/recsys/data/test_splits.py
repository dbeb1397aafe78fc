"""Splits that cannot work stop at prepare time, naming the split keys; nothing is written."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.checks import check_split, personalisable_users
from recsys.data.dataset import build_dataset
from recsys.data.prepare import prepare_dataset
from recsys.data.schema import PositiveRule
from recsys.data.split import TemporalSplit
from recsys.errors import DataError

KEYS = "data.split.valid_fraction / data.split.test_fraction"


def _refused(src, config, tmp_path) -> str:
    with pytest.raises(DataError) as err:
        prepare_dataset(config(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    return str(err.value)


def test_identical_timestamps(write_source, config, tables, tmp_path):
    items, inter = tables
    msg = _refused(write_source(interactions=inter.assign(timestamp=inter["timestamp"].iloc[0])), config, tmp_path)
    assert "all 30 interactions have the same timestamp" in msg and "no train period" in msg


def test_timestamps_within_one_day(write_source, config, tables, tmp_path):
    items, inter = tables
    one_day = pd.Timestamp("2026-01-03", tz="UTC") + pd.to_timedelta(range(30), unit="min")
    msg = _refused(write_source(interactions=inter.assign(timestamp=one_day)), config, tmp_path)
    assert "all 30 interactions fall on one day (2026-01-03)" in msg and KEYS in msg


def test_no_test_user_with_train_history(write_source, config, tables, tmp_path):
    items, inter = tables
    inter = inter.copy()
    late = inter["timestamp"] >= pd.Timestamp("2026-01-11", tz="UTC")  # days 8, 9: the test period
    inter.loc[late, "user_id"] += 100                                   # newcomers only
    msg = _refused(write_source(interactions=inter), config, tmp_path)
    assert "none of the 3 test-period users has a positive train-period interaction" in msg and KEYS in msg


def _ds(tables, split: TemporalSplit):
    items, inter = tables
    return build_dataset(name="t", source="t", items=items, interactions=inter, labels={"click": ""},
                         positive=PositiveRule("click", 1), split=split)


@pytest.mark.parametrize("cut, period", [
    (("2026-01-01", "2026-01-08"), "train"),   # train_end before the data
    (("2026-01-08", "2026-01-08"), "valid"),   # no valid period
    (("2026-01-08", "2026-02-01"), "test"),    # valid_end after the data
])
def test_cut_off_outside_the_data(tables, cut, period):
    ds = _ds(tables, TemporalSplit(pd.Timestamp(cut[0], tz="UTC"), pd.Timestamp(cut[1], tz="UTC")))
    with pytest.raises(DataError, match=f"the {period} period is empty .*adjust {KEYS}"):
        check_split(ds)


def test_history_must_precede_the_example_day():
    """Features are daily snapshots: a train positive earlier on the same day as a valid example is not history."""
    t = lambda s: pd.Timestamp(f"2026-{s}", tz="UTC")  # noqa: E731
    items = pd.DataFrame({"item_id": [1, 2], "created_at": [t("01-01")] * 2})
    inter = pd.DataFrame([
        (1, 1, t("01-02 10:00"), 1.0),  # train
        (2, 1, t("01-03 08:00"), 1.0),  # train, the day of user 2's valid example
        (1, 2, t("01-03 15:00"), 0.0),  # valid
        (2, 2, t("01-03 16:00"), 0.0),  # valid
        (3, 1, t("01-04 13:00"), 1.0),  # test, a newcomer
        (2, 1, t("01-05 10:00"), 0.0),  # test
    ], columns=["user_id", "item_id", "timestamp", "click"])
    ds = build_dataset(name="t", source="t", items=items, interactions=inter, labels={"click": ""},
                       positive=PositiveRule("click", 1), split=TemporalSplit(t("01-03 12:00"), t("01-04 12:00")))
    assert list(personalisable_users(ds, "valid")) == [1]
    assert list(personalisable_users(ds, "test")) == [2]
    check_split(ds)
