"""Negative sampling for implicit feedback (ranking/negatives.py through ranking.examples.labelled_examples):
k negatives per positive among live items, never the user's history, point-in-time popularity, seeded; and the
single-class refusal."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from ranking.examples import labelled_examples
from ranking.negatives import NegativeSamplingConfig
from recsys.data.dataset import build_dataset
from recsys.data.schema import PositiveRule
from recsys.data.split import TemporalSplit
from recsys.errors import DataError

T0 = pd.Timestamp("2024-01-01", tz="UTC")
N_ITEMS, N_USERS, LATE, HOT = 200, 50, range(180, 200), 0
"""Items 180..199 are created on day 22 (inside the valid period); item HOT is clicked 2000 times on days 0-5 by
users who click nothing else, and never by the regular users."""
SPLIT = TemporalSplit(T0 + pd.Timedelta(days=18), T0 + pd.Timedelta(days=25))   # train 0-18, valid 18-25, test 25-30


def _implicit(test_item: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    created = np.full(N_ITEMS, T0 - pd.Timedelta(days=30))
    created[list(LATE)] = T0 + pd.Timedelta(days=22)
    items = pd.DataFrame({"item_id": np.arange(N_ITEMS, dtype=np.int64), "created_at": pd.to_datetime(created)})
    secs = np.sort(rng.integers(0, 30 * 86400, 3000))
    ts = T0 + pd.to_timedelta(secs, unit="s")
    live = [np.array([i for i in range(1, N_ITEMS) if i not in LATE or t >= T0 + pd.Timedelta(days=22)])
            for t in ts]
    regular = pd.DataFrame({"user_id": rng.integers(0, N_USERS, len(ts)).astype(np.int64),
                            "item_id": np.array([rng.choice(c) for c in live], dtype=np.int64), "timestamp": ts})
    burst = pd.DataFrame({"user_id": np.arange(1000, 3000, dtype=np.int64), "item_id": np.int64(HOT),
                          "timestamp": T0 + pd.to_timedelta(np.sort(rng.integers(0, 5 * 86400, 2000)), unit="s")})
    inter = pd.concat([regular, burst], ignore_index=True)
    if test_item is not None:                                   # a different test period, same past
        inter.loc[inter["timestamp"] >= SPLIT.valid_end, "item_id"] = test_item
    inter["click"] = np.float32(1)
    return build_dataset(name="implicit", source="test", items=items, interactions=inter,
                         labels={"click": "clicked"}, positive=PositiveRule("click", 1), split=SPLIT)


@pytest.fixture(scope="module")
def implicit():
    return _implicit()


def _negatives(ex):
    return ex.frame.loc[ex.frame["label"] == 0]


@pytest.mark.parametrize("strategy", ["uniform", "popularity", "window_popularity"])
def test_k_live_unseen_negatives_per_positive(implicit, strategy):
    ds = implicit
    assert ds.feedback == "implicit"
    n_log = len(ds.interactions)
    cfg = NegativeSamplingConfig(strategy=strategy, k=3, window_days=3, seed=7)
    ex = labelled_examples(ds, "valid", negatives=cfg)
    logged = SPLIT.valid(ds.interactions)
    pos, neg = ex.frame.loc[ex.frame["label"] == 1], _negatives(ex)
    assert len(pos) == len(logged) and len(ds.interactions) == n_log    # the log itself is untouched
    assert ex.negatives.as_dict() == {"period": "valid", "positives": len(pos), "negatives": 3 * len(pos),
                                      "unfilled": 0, "strategy": strategy, "k": 3}
    assert len(neg) == 3 * len(pos)
    per_positive = neg.groupby(["user_id", "event_timestamp"])["item_id"].agg(["size", "nunique"])
    assert (per_positive["size"] == 3).all() and (per_positive["nunique"] == 3).all()   # distinct, at its time
    assert set(per_positive.index) == set(zip(pos["user_id"], pos["event_timestamp"]))
    live_from = ds.item_available_at()
    assert (live_from.loc[neg["item_id"]].to_numpy() <= neg["event_timestamp"].to_numpy()).all()
    first = ds.interactions.groupby(["user_id", "item_id"])["timestamp"].min()
    seen = first.reindex(pd.MultiIndex.from_frame(neg[["user_id", "item_id"]])).to_numpy()
    assert not (pd.notna(seen) & (seen <= neg["event_timestamp"].to_numpy())).any()
    again = labelled_examples(ds, "valid", negatives=cfg)
    pd.testing.assert_frame_equal(again.frame, ex.frame)
    other = labelled_examples(ds, "valid", negatives=cfg.model_copy(update={"seed": 8}))
    assert not other.frame.equals(ex.frame)


def test_popularity_counts_only_the_past_and_the_window(implicit):
    share = {}
    for strategy in ("uniform", "popularity", "window_popularity"):
        cfg = NegativeSamplingConfig(strategy=strategy, k=1, window_days=3)
        neg = _negatives(labelled_examples(implicit, "valid", negatives=cfg))
        share[strategy] = float((neg["item_id"] == HOT).mean())
    # popularity: 1 + 2000 of about 180 live items + 4200 earlier clicks; the window (3 days) holds no HOT click
    assert 0.35 < share["popularity"] < 0.55
    assert share["uniform"] < 0.03 and share["window_popularity"] < 0.03


@pytest.mark.parametrize("strategy", ["popularity", "window_popularity"])
def test_valid_negatives_do_not_depend_on_the_test_period(implicit, strategy):
    changed = _implicit(test_item=5)
    cfg = NegativeSamplingConfig(strategy=strategy)
    pd.testing.assert_frame_equal(labelled_examples(changed, "valid", negatives=cfg).frame,
                                  labelled_examples(implicit, "valid", negatives=cfg).frame)
    assert not labelled_examples(changed, "test", negatives=cfg).frame.equals(
        labelled_examples(implicit, "test", negatives=cfg).frame)


def test_max_rows_keeps_whole_users_with_their_negatives(implicit):
    ex = labelled_examples(implicit, "test", max_rows=300, seed=1)
    assert 0 < len(ex.frame) <= 300
    full = labelled_examples(implicit, "test").frame
    for u, n in ex.frame.groupby("user_id").size().items():
        assert n == (full["user_id"] == u).sum()


def _small(valid_items: list[int], history: dict[int, list[int]]):
    """Three items; users click `history` items in train, then `valid_items` (user = position) in valid."""
    items = pd.DataFrame({"item_id": np.arange(3, dtype=np.int64), "created_at": T0})
    rows = [(u, i, T0 + pd.Timedelta(days=1 + j)) for u, its in history.items() for j, i in enumerate(its)]
    rows += [(u, i, T0 + pd.Timedelta(days=19, hours=u)) for u, i in enumerate(valid_items)]
    rows += [(9, 0, T0 + pd.Timedelta(days=26)), (9, 1, T0 + pd.Timedelta(days=27))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(click=np.float32(1))
    return build_dataset(name="small", source="test", items=items, interactions=inter, labels={"click": "c"},
                         positive=PositiveRule("click", 1), split=SPLIT)


def test_a_short_pool_is_counted_and_warned(caplog):
    ds = _small(valid_items=[2, 2], history={0: [0, 1], 1: [0]})     # user 0: nothing left; user 1: item 1 only
    with caplog.at_level(logging.WARNING, logger="ranking.negatives"):
        ex = labelled_examples(ds, "valid", negatives=NegativeSamplingConfig(k=2))
    assert ex.negatives.as_dict() == {"period": "valid", "positives": 2, "negatives": 1, "unfilled": 3,
                                      "strategy": "popularity", "k": 2}
    assert _negatives(ex)[["user_id", "item_id"]].values.tolist() == [[1, 1]]
    assert "3 of 4 slots" in caplog.text


def test_implicit_period_without_any_negative_is_refused():
    ds = _small(valid_items=[2], history={0: [0, 1]})
    with pytest.raises(DataError, match=r"valid period: 1 examples, every example is positive .*click >= 1, "
                                        r"feedback implicit.*ranking\.negatives"):
        labelled_examples(ds, "valid")


def test_single_class_explicit_period_is_refused(tiny_dataset):
    ds = tiny_dataset("synthetic")
    inter = ds.interactions.assign(like=(ds.interactions["timestamp"] >= ds.split.train_end).astype(np.float32))
    one_class = build_dataset(name="x", source="test", items=ds.items, interactions=inter,
                              labels={"like": "liked"}, positive=ds.positive, split=ds.split)
    assert one_class.feedback == "explicit"
    with pytest.raises(DataError, match=r"valid period: 3 examples, every example is positive \(positive rule "
                                        r"like >= 1, feedback explicit\).*feedback implicit"):
        labelled_examples(one_class, "valid")
    with pytest.raises(DataError, match=r"train period: 6 examples, every example is negative"):
        labelled_examples(one_class, "train")
