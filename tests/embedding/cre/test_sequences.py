"""Seq2item examples: vanilla and filtered histories, padding, lookback, train split only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedding.cre.sequences import build_sequences, seq2item_events
from recsys.data.dataset import Dataset


def _events(items, user=1):
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({"user_id": user, "item_id": np.asarray(items, np.int64),
                         "timestamp": [t0 + pd.Timedelta(hours=h) for h in range(len(items))]})


def test_vanilla_and_filtered_sequences():
    items = np.arange(100, 116)  # 15 earlier items then the target 115
    ev = _events(items)
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(16, 8))
    similar = [101, 104, 105, 107, 109, 110, 111, 112, 113, 114]  # the 10 closest to the target
    vec[[i - 100 for i in similar]] = vec[15] + 0.01 * rng.normal(size=(10, 8))
    van = build_sequences(ev, "vanilla", 10, last_only=True, seed=0)
    fil = build_sequences(ev, "filtered", 10, items, vec, last_only=True)
    for s in (van, fil):
        assert len(s) == 1 and s.target[0] == 115 and s.history.shape == (1, 10)
        assert 115 not in s.history[0] and (np.diff(s.history[0]) > 0).all()  # time order, no target
        assert set(s.history[0]) <= set(items[:15])
    assert fil.history[0].tolist() == similar
    assert van.history[0].tolist() != similar  # a random draw (fixed by the seed)
    assert build_sequences(ev, "vanilla", 10, last_only=True, seed=0).history.tolist() == van.history.tolist()
    # every position with >= min_history earlier items is a target; short histories are padded with -1
    allp = build_sequences(ev, "vanilla", 10, min_history=3)
    assert allp.target.tolist() == items[3:].tolist()
    assert allp.history[0].tolist() == [100, 101, 102] + [-1] * 7 and allp.lengths.tolist()[:2] == [3, 4]
    # repeats of the target are no history; lookback bounds the window
    rep = build_sequences(_events([7, 8, 9, 7]), "vanilla", 10, last_only=True)
    assert rep.history[0].tolist()[:2] == [8, 9] and (rep.history[0][2:] == -1).all()
    assert build_sequences(ev, "vanilla", 10, max_lookback=4, last_only=True).lengths[0] == 4
    with pytest.raises(ValueError, match="item vectors"):
        build_sequences(ev, "filtered", 10)
    with pytest.raises(ValueError, match="unknown sequence kind"):
        build_sequences(ev, "random")


def test_sequences_see_train_split_only(cre_world):
    ds = cre_world.ds
    hist, targets = seq2item_events(ds)
    train = ds.split.train(ds.interactions)
    assert hist["timestamp"].max() < ds.split.train_end and targets["timestamp"].max() < ds.split.train_end
    pos = train.loc[ds.is_positive(train)]
    once = pos["user_id"].value_counts().eq(1).sum()  # users with one train positive have no target
    assert len(hist) + len(targets) == len(pos) - once and len(targets) == pos["user_id"].nunique() - once
    assert targets["user_id"].is_unique
    # events after the train cut-off change no sequence
    stamps = ([ds.split.train_end + pd.Timedelta(minutes=m) for m in range(20)]
              + [ds.split.valid_end + pd.Timedelta(minutes=m) for m in range(20)])
    late = pd.DataFrame({"user_id": [0] * 20 + [999] * 20, "item_id": np.tile(ds.items["item_id"].to_numpy()[:20], 2),
                         "timestamp": pd.Series(stamps, dtype="datetime64[us, UTC]"), "like": np.float32(1.0)})
    grown = Dataset(ds.manifest, ds.items, pd.concat([ds.interactions, late], ignore_index=True))
    h2, t2 = seq2item_events(grown)
    pd.testing.assert_frame_equal(hist, h2)
    pd.testing.assert_frame_equal(targets, t2)
    a, b = (build_sequences(h, "vanilla", 10, min_history=3, seed=1) for h in (hist, h2))
    assert np.array_equal(a.history, b.history) and np.array_equal(a.target, b.target)
