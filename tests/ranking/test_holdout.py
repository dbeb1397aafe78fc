"""The rankers' time holdout (ranking/holdout.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from ranking.holdout import time_holdout
from recsys.errors import DataError


def test_time_holdout_is_latest_fraction():
    df = pd.DataFrame({"event_timestamp": pd.to_datetime([5, 1, 3, 2, 4, 9, 8, 7, 6, 10], unit="D", utc=True)})
    mask = time_holdout(df, 0.2)
    assert sorted(df.loc[mask, "event_timestamp"].dt.day) == [10, 11]    # epoch day 9 and 10 -> the 2 latest
    same = pd.DataFrame({"event_timestamp": [pd.Timestamp("2024-01-01", tz="UTC")] * 10})
    assert time_holdout(same, 0.2).sum() == 2                             # one timestamp: fallback to row order


def test_whole_timestamps_stay_on_one_side():
    ts = pd.to_datetime([1, 1, 2, 2, 2, 3, 3, 3, 3, 4], unit="D", utc=True)
    mask = time_holdout(pd.DataFrame({"event_timestamp": ts}), 0.3)
    assert not set(ts[mask]) & set(ts[~mask]) and ts[mask].min() > ts[~mask].max()
    assert mask.sum() == 5                                                # the cut falls inside day 3: all of it


def test_bad_frames_are_reported():
    with pytest.raises(DataError, match="at least 2"):
        time_holdout(pd.DataFrame({"event_timestamp": [pd.Timestamp("2024-01-01", tz="UTC")]}), 0.2)
    with pytest.raises(DataError, match="when"):
        time_holdout(pd.DataFrame({"t": [1, 2, 3]}), 0.2, time_col="when")
