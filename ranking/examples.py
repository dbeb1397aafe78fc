"""Labelled ranking examples from the canonical dataset's valid and test periods.

Definition of an example and its label:

- Synthetic world: every logged impression (a row of ``ds.interactions``) is an example; the label is the
  dataset's positive rule (``ds.is_positive``, e.g. ``like >= 1``).
- MovieLens: a rated item is the impression (we only observe what was rated); the label is the manifest's
  positive rule, ``rating >= 4``.

Either way the label is ``ds.positive`` (``PositiveRule``) applied to the row: no dataset-specific code here.

Which period trains what: the embedding, interests and statistics features are fit on the TRAIN period, so
rankers are trained on VALID-period examples (features joined point-in-time, i.e. from data strictly before
each example) and evaluated on TEST-period examples. Training the ranker on train-period examples would let it
learn from features computed in-sample (e.g. an item's positive rate that includes the example itself, or an
embedding trained on that very interaction), which inflates their apparent value.

The returned frame is the Feast ``entity_df``: ``user_id, item_id, event_timestamp, label`` with
``event_timestamp`` = the interaction time.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

PERIODS = ("train", "valid", "test")


def labelled_examples(ds, period: Literal["valid", "test", "train"], max_rows: int | None = None,
                      seed: int = 0) -> pd.DataFrame:
    """DataFrame[user_id int64, item_id int64, event_timestamp datetime64[us, UTC], label int8] of one period.

    Rows are sorted by (event_timestamp, user_id, item_id). `max_rows` subsamples whole USERS (random order,
    seeded) until the row budget is reached, so per-user metrics (GAUC) and the user-level bootstrap stay
    meaningful; a first user larger than the budget is truncated to its earliest `max_rows` rows.
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
    if max_rows is not None and len(out) > max_rows:
        out = _sample_users(out, max_rows, seed)
    return out.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)


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

