"""Labelled ranking examples from the canonical dataset's valid and test periods.

Definition of an example and its label:

- Synthetic world: every logged impression (a row of ``ds.interactions``) is an example; the label is the
  dataset's positive rule (``ds.is_positive``, e.g. ``like >= 1``).
- MovieLens: a rated item is the impression (we only observe what was rated); the label is the manifest's
  positive rule, ``rating >= 4``.

- Implicit feedback (manifest ``feedback: implicit``: every logged interaction is a positive, no impressions): the
  positives are the logged rows and the negatives are sampled, ``k`` per positive at the positive's time
  (``ranking.negatives``, config ``ranking.negatives``), identically for every period.

Either way the label is ``ds.positive`` (``PositiveRule``) applied to the row: no dataset-specific code here.
A period whose examples are empty or of one class is refused (DataError naming the period, the row count, the
positive rule, the feedback type and the knob): AUC and log loss would be undefined and the run would end
"successfully" with a table of NaNs.

Which period trains what: the embedding, interests and statistics features are fit on the TRAIN period, so
rankers are trained on VALID-period examples (features joined point-in-time, i.e. from data strictly before
each example) and evaluated on TEST-period examples. Training the ranker on train-period examples would let it
learn from features computed in-sample (e.g. an item's positive rate that includes the example itself, or an
embedding trained on that very interaction), which inflates their apparent value.

The returned frame is the Feast ``entity_df``: ``user_id, item_id, event_timestamp, label`` with
``event_timestamp`` = the interaction time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ranking.negatives import NegativeCounts, NegativeSamplingConfig, sample_negatives
from recsys.data.dataset import Dataset
from recsys.errors import DataError

PERIODS = ("train", "valid", "test")


@dataclass
class LabelledExamples:
    """One period's examples (the Feast entity_df) and, for implicit feedback, what negative sampling did."""

    frame: pd.DataFrame
    negatives: NegativeCounts | None = None


def is_implicit(ds: Dataset) -> bool:
    """True when the dataset logs positives only (manifest ``feedback: implicit``)."""
    return ds.feedback == "implicit"


def labelled_examples(ds: Dataset, period: Literal["valid", "test", "train"], max_rows: int | None = None,
                      seed: int = 0, negatives: NegativeSamplingConfig | None = None) -> LabelledExamples:
    """Examples of one period: frame = DataFrame[user_id int64, item_id int64, event_timestamp datetime64[us,
    UTC], label int8].

    Implicit feedback: the logged rows plus `negatives` (default `NegativeSamplingConfig()`) sampled negatives;
    explicit: the logged rows only. Rows are sorted by (event_timestamp, user_id, item_id). `max_rows` subsamples
    whole USERS (random order, seeded) until the row budget is reached, sampled negatives included, so per-user
    metrics (GAUC) and the user-level bootstrap stay meaningful; a first user larger than the budget is truncated
    to its earliest `max_rows` rows. Raises DataError when the result is empty or of one class.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
    rows = getattr(ds.split, period)(ds.interactions)
    out = pd.DataFrame({
        "user_id": rows["user_id"].astype("int64").to_numpy(),
        "item_id": rows["item_id"].astype("int64").to_numpy(),
        "event_timestamp": rows["timestamp"].to_numpy(),
        "label": ds.is_positive(rows).astype("int8").to_numpy(),
    })
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    counts = None
    if is_implicit(ds):
        cfg = negatives or NegativeSamplingConfig()
        sampled, counts = sample_negatives(ds.interactions, ds.item_available_at(), out.loc[out["label"] == 1],
                                           cfg, period, PERIODS.index(period))
        out = pd.concat([out, sampled], ignore_index=True)
    if max_rows is not None and len(out) > max_rows:
        out = _sample_users(out, max_rows, seed)
    out = out.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    check_two_classes(ds, period, out["label"])
    return LabelledExamples(out, counts)


def check_two_classes(ds: Dataset, period: str, labels: pd.Series) -> None:
    """DataError unless `labels` hold both classes: the message names the period, the rows, the positive rule,
    the feedback type and what to change."""
    n, positives = len(labels), int((labels == 1).sum())
    if n and 0 < positives < n:
        return
    feedback = ds.feedback
    what = "no examples" if not n else ("every example is positive" if positives else "every example is negative")
    where = (f"{period} period: {n} examples, {what} (positive rule {ds.positive.describe()}, feedback "
             f"{feedback})")
    if not n:
        hint = ("the period holds no interaction: check the timestamps and data.split (valid_fraction, "
                "test_fraction)")
    elif feedback == "implicit":
        hint = "implicit feedback samples its negatives: check ranking.negatives (k, strategy, exclude)"
    elif positives:
        hint = ("a log of positives only needs sampled negatives: prepare the dataset with feedback implicit, or "
                "change the positive rule (data.positive)")
    else:
        hint = "no row meets the positive rule: check data.positive (column, min_value) and the label column"
    raise DataError(f"{where}; AUC and log loss are undefined on one class. {hint}")


def _sample_users(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    counts = df.groupby("user_id").size()
    rng = np.random.default_rng(seed)
    order = counts.index.to_numpy()[rng.permutation(len(counts))]
    cum = counts.loc[order].cumsum().to_numpy()
    keep = order[cum <= max_rows]
    if len(keep) == 0:
        first = df.loc[df["user_id"] == order[0]]
        return first.sort_values("event_timestamp", kind="stable").head(max_rows)
    return df.loc[df["user_id"].isin(keep)]

