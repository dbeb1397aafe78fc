"""Point-in-time semantics of item content: an item's embedding and semantic IDs are available from the item
table's event_timestamp on (the embedding stage writes min(created_at, first interaction)), in the offline join,
online, and in interest mining alike."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from features.interests import daily_snapshots, interest_skips, mine_interests
from features.schema import sid_columns

LATE = [100, 104, 109, 115, 120, 131]
"""Items whose created_at is after their interactions: their availability is their first interaction."""


@pytest.fixture(scope="module")
def late_world(fw, tmp_path_factory):
    items, ev = fw.make_world()
    first = ev.groupby("item_id")["timestamp"].min()
    items = items.copy()
    late = items["item_id"].isin(LATE)
    items.loc[late, "event_timestamp"] = items.loc[late, "item_id"].map(first).to_numpy()
    repo = fw.build_repo(tmp_path_factory.mktemp("late"), items, ev)
    return items, ev, repo


def test_examples_at_or_after_availability_find_embedding_and_sids(fw, late_world):
    items, ev, repo = late_world
    avail = items.set_index("item_id")["event_timestamp"]
    assert (avail[LATE].dt.floor("D") != avail[LATE]).all()  # off the daily grid: the hard case for the join
    shown = ev.loc[ev["item_id"].isin(LATE), ["user_id", "item_id", "timestamp"]]
    at = pd.DataFrame([(u, i, avail[i] + pd.Timedelta(off)) for u in (1, 2) for i in LATE
                       for off in ("0us", "1us", "3h")], columns=["user_id", "item_id", "timestamp"])
    edf = pd.concat([shown, at], ignore_index=True).rename(columns={"timestamp": "event_timestamp"})
    sids = sid_columns(3)
    for engine in ("feast", "asof"):
        got = repo.historical(edf, engine=engine)
        assert not got["unknown_item"].any()
        expect = items.set_index("item_id").loc[edf["item_id"], sids].to_numpy()
        np.testing.assert_array_equal(got[sids].to_numpy(), expect)
        known_user = got["hist_len"] > 0
        assert known_user.sum() > len(LATE) and got.loc[known_user, "cos_mean"].notna().all()
    before = edf.assign(event_timestamp=edf["item_id"].map(avail) - pd.Timedelta(microseconds=1))
    early = repo.historical(before)
    assert early["unknown_item"].all() and (early[sids] == -1).all().all() and early["cos_mean"].isna().all()


def test_online_equals_offline_for_late_items(fw, late_world):
    items, _, repo = late_world
    t = fw.START + pd.Timedelta(days=8)
    repo.materialize(t)
    frames = fw.assert_online_equals_offline(repo, [1, 2, 3, 6, 424242], [*LATE, 101, 99999], t)
    assert not frames[1].loc[frames[1]["item_id"].isin(LATE), "unknown_item"].any()


def test_interest_mining_uses_the_same_availability(fw, late_world, caplog):
    items, ev, _ = late_world
    pos = ev.loc[ev["like"] >= 1]
    snaps = daily_snapshots(fw.START, fw.START + pd.Timedelta(days=11))
    assert interest_skips(pos, items) == {"events_without_embedding": 0, "events_before_availability": 0}
    # a table stamped with a created_at after every interaction: those events are skipped, counted and logged
    stamped = items.copy()
    late = stamped["item_id"].isin(LATE)
    stamped.loc[late, "event_timestamp"] = fw.START + pd.Timedelta(days=20)
    n_late = int(pos["item_id"].isin(LATE).sum())
    assert n_late > 0
    assert interest_skips(pos, stamped) == {"events_without_embedding": 0, "events_before_availability": n_late}
    with caplog.at_level(logging.WARNING, logger="features.interests"):
        mined = mine_interests(pos, stamped, snaps, fw.ICFG, sid_levels=3)
    assert f"0 positive events of items without an embedding and {n_late} before" in caplog.text
    expected = mine_interests(pos.loc[~pos["item_id"].isin(LATE)], items, snaps, fw.ICFG, sid_levels=3)
    pd.testing.assert_frame_equal(mined, expected)
