"""Can a run learn and evaluate anything on this dataset? Checked at prepare time, before anything is written.

A run trains rankers on the valid period and evaluates them on the test period, with features that are daily
point-in-time snapshots (00:00 UTC: an example at time t sees its user's history before t's day). A split with an
empty period, or whose valid/test users have no positive train-period history before their examples' day, gives
a table of numbers with nothing behind them; it stops here with a DataError naming the split keys instead.
"""

from __future__ import annotations

import pandas as pd

from recsys.data.dataset import Dataset
from recsys.errors import DataError

SPLIT_KEYS = "data.split.valid_fraction / data.split.test_fraction"


def _where(ds: Dataset) -> str:
    sp, ts = ds.split, ds.interactions["timestamp"]
    return (f"cut-offs train_end={sp.train_end.isoformat()}, valid_end={sp.valid_end.isoformat()}; interactions "
            f"span {ts.min().isoformat()} .. {ts.max().isoformat()}")


def check_split(ds: Dataset) -> None:
    """DataError for an empty train/valid/test period or valid/test periods without personalisable users."""
    inter = ds.interactions
    ts = inter["timestamp"]
    if ts.nunique() == 1:
        raise DataError(f"all {len(inter)} interactions have the same timestamp {ts.iloc[0].isoformat()}: a temporal "
                        f"split has no train period ({SPLIT_KEYS} cannot help; the timestamps must differ)",
                        column="timestamp")
    days = ts.dt.floor("D")
    if days.nunique() == 1:
        raise DataError(f"all {len(inter)} interactions fall on one day ({days.iloc[0].date()}): features are daily "
                        "point-in-time snapshots, so no valid or test example would see any history; timestamps "
                        f"must span several days ({SPLIT_KEYS})", column="timestamp")
    period = ds.split.period(ts)
    for name in ("train", "valid", "test"):
        if not (period == name).any():
            raise DataError(f"the {name} period is empty ({_where(ds)}); adjust {SPLIT_KEYS}", column="timestamp")
    for name in ("valid", "test"):
        if len(personalisable_users(ds, name)) == 0:
            n = inter.loc[period == name, "user_id"].nunique()
            raise DataError(f"none of the {n} {name}-period users has a positive train-period interaction "
                            f"({ds.positive.describe()}) before the day of their {name} interactions: nothing to "
                            f"personalise ({_where(ds)}); adjust {SPLIT_KEYS}", column="user_id")


def personalisable_users(ds: Dataset, period: str) -> pd.Index:
    """Users of `period` with a positive train-period interaction before the day of their last `period` event."""
    inter = ds.interactions
    p = ds.split.period(inter["timestamp"])
    first = inter.loc[(p == "train") & ds.is_positive(inter)].groupby("user_id")["timestamp"].min()
    last_day = inter.loc[p == period].groupby("user_id")["timestamp"].max().dt.floor("D")
    return last_day.index[(first.reindex(last_day.index) < last_day).to_numpy()]
