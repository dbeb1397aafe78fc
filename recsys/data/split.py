"""Temporal splitting, defined once for every stage.

Global time cut-offs: train = t < train_end, valid = train_end <= t < valid_end, test = t >= valid_end.
Cut-offs live in the dataset manifest, so every stage of every run splits the same way and no stage can
see test-period interactions by accident. Leave-last-out per user is for sequence evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recsys.errors import ConfigError


@dataclass(frozen=True)
class TemporalSplit:
    train_end: pd.Timestamp
    valid_end: pd.Timestamp

    def __post_init__(self) -> None:
        if not self.train_end <= self.valid_end:
            raise ConfigError(f"split: train_end {self.train_end} must not be after valid_end {self.valid_end}")

    @classmethod
    def from_fractions(cls, timestamps: pd.Series, valid_fraction: float, test_fraction: float) -> TemporalSplit:
        """Cut-offs at time quantiles so that about the given fractions of events fall in valid and test."""
        if not (0 <= valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
            raise ConfigError(f"split fractions (data.split.valid_fraction={valid_fraction}, "
                              f"data.split.test_fraction={test_fraction}) must be in [0,1) and sum to less than 1")
        ts = timestamps.sort_values().reset_index(drop=True)
        n = len(ts)
        train_end = ts.iloc[min(n - 1, int(round(n * (1 - valid_fraction - test_fraction))))]
        valid_end = ts.iloc[min(n - 1, int(round(n * (1 - test_fraction))))]
        return cls(pd.Timestamp(train_end), pd.Timestamp(valid_end))

    @classmethod
    def from_manifest(cls, split: dict) -> TemporalSplit:
        return cls(pd.Timestamp(split["train_end"]), pd.Timestamp(split["valid_end"]))

    def to_manifest(self) -> dict[str, str]:
        return {"train_end": self.train_end.isoformat(), "valid_end": self.valid_end.isoformat()}

    def period(self, timestamps: pd.Series) -> pd.Series:
        """'train' / 'valid' / 'test' for each timestamp."""
        out = pd.Series("test", index=timestamps.index, dtype=object)
        out[timestamps < self.valid_end] = "valid"
        out[timestamps < self.train_end] = "train"
        return out

    def train(self, df: pd.DataFrame, column: str = "timestamp") -> pd.DataFrame:
        return df.loc[df[column] < self.train_end]

    def valid(self, df: pd.DataFrame, column: str = "timestamp") -> pd.DataFrame:
        return df.loc[(df[column] >= self.train_end) & (df[column] < self.valid_end)]

    def test(self, df: pd.DataFrame, column: str = "timestamp") -> pd.DataFrame:
        return df.loc[df[column] >= self.valid_end]

    def before_test(self, df: pd.DataFrame, column: str = "timestamp") -> pd.DataFrame:
        return df.loc[df[column] < self.valid_end]


@dataclass(frozen=True)
class Fold:
    """One rolling-origin fold: train < train_end <= valid < valid_end <= test (evaluation) < test_end. Nothing at or
    after test_end exists for the fold (`recsys.data.dataset.fold_view`)."""

    index: int
    train_end: pd.Timestamp
    valid_end: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def split(self) -> TemporalSplit:
        return TemporalSplit(self.train_end, self.valid_end)

    def to_dict(self) -> dict[str, str | int]:
        return {"fold": self.index, "train_end": self.train_end.isoformat(), "valid_end": self.valid_end.isoformat(),
                "test_end": self.test_end.isoformat()}


def rolling_folds(timestamps: pd.Series, folds: int, fold_fraction: float, valid_fraction: float) -> list[Fold]:
    """`folds` consecutive evaluation windows of `fold_fraction` of the events each, ending with the last event;
    each fold validates (trains its rankers) on the `valid_fraction` of events just before its window and fits
    everything else on the events before that. Cut-offs are time quantiles, oldest fold first."""
    if folds < 1:
        raise ConfigError(f"data.split.folds must be >= 1, got {folds}")
    if not 0 < folds * fold_fraction + valid_fraction < 1:
        raise ConfigError(f"data.split: folds x fold_fraction + valid_fraction = {folds} x {fold_fraction} + "
                          f"{valid_fraction} must be below 1 (the first fold needs training events)")
    ts = timestamps.sort_values().reset_index(drop=True)
    n = len(ts)

    def at(q: float) -> pd.Timestamp:
        return pd.Timestamp(ts.iloc[min(n - 1, int(round(n * q)))])

    out = []
    for k in range(folds):
        start = 1 - (folds - k) * fold_fraction
        end = ts.iloc[-1] + pd.Timedelta(microseconds=1) if k == folds - 1 else at(start + fold_fraction)
        out.append(Fold(k, at(start - valid_fraction), at(start), pd.Timestamp(end)))
    return out


def leave_last_out(interactions: pd.DataFrame, min_history: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user: all but the last event (history) and the last event (target), users with >= min_history events.

    Ties in time are broken by item_id so the result is deterministic.
    """
    df = interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    counts = df.groupby("user_id")["item_id"].transform("size")
    df = df.loc[counts >= min_history]
    is_last = ~df["user_id"].duplicated(keep="last")
    return df.loc[~is_last].reset_index(drop=True), df.loc[is_last].reset_index(drop=True)
