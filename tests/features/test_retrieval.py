"""Historical (point-in-time) retrieval: exact as-of semantics, no lost rows, no leakage, and the reduced Feast
queries (reduce_times) and the pandas engine give exactly the per-example-time answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import retrieval
from features.definitions import FULL_SERVICE, SERVICE_BY_VARIANT
from features.repo import FeatureRepo
from features.schema import SOURCES


def brute_hist_len(ev, user, t):
    """Positives of `user` before the last daily snapshot <= t."""
    snap = t.floor("D")
    return int(((ev["user_id"] == user) & (ev["timestamp"] < snap) & (ev["like"] >= 1)).sum())


def test_historical_is_point_in_time(fw, world, repo):
    items, ev = world
    day4 = fw.START + pd.Timedelta(days=4)
    times = [day4, day4 - pd.Timedelta(microseconds=1), day4 + pd.Timedelta(hours=13), fw.START + pd.Timedelta(days=8)]
    rows = [(u, 100 + u, t) for u in range(1, 7) for t in times]
    edf = pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"])
    edf["label"] = 1.0
    h = repo.historical(edf, SERVICE_BY_VARIANT["match"])
    assert list(h["label"]) == list(edf["label"]) and (h["user_id"].to_numpy() == edf["user_id"]).all()
    for r in h.itertuples():
        assert r.hist_len == brute_hist_len(ev, r.user_id, r.event_timestamp), r
        snap = r.event_timestamp.floor("D")
        before = (ev["item_id"] == r.item_id) & (ev["timestamp"] < snap)
        assert r.item_impressions == before.sum()
    # user 6 has no events before day 7: its early rows survive with defaults and the flag
    u6 = h.loc[(h["user_id"] == 6) & (h["event_timestamp"] < fw.START + pd.Timedelta(days=7))]
    assert len(u6) == 3 and u6["unknown_user"].all() and (u6["hist_len"] == 0).all()
    assert u6["cos_mean"].isna().all()
    # the pandas as-of engine gives the identical frame
    pd.testing.assert_frame_equal(h, repo.historical(edf, SERVICE_BY_VARIANT["match"], engine="asof"))


def test_historical_keeps_rows_sharing_user_and_time(fw, repo):
    """Feast's file store collapses rows sharing (join key, timestamp) (feast#6787); ours must not."""
    t = fw.START + pd.Timedelta(days=5, hours=2)
    edf = pd.DataFrame({"user_id": [1] * 5 + [2] * 2, "item_id": [100, 101, 102, 103, 100, 100, 139],
                        "event_timestamp": [t] * 7})
    h = repo.historical(edf, FULL_SERVICE)
    assert len(h) == 7 and list(h["item_id"]) == list(edf["item_id"])
    assert h.loc[0, "cos_mean"] == h.loc[4, "cos_mean"]  # duplicate rows: same features
    assert h.loc[6, "unknown_item"] and h.loc[6, "sid_0"] == -1  # item 139 is created on day 6


def test_no_leakage_end_to_end(fw, world, repo, tmp_path):
    items, ev = world
    t = fw.START + pd.Timedelta(days=5)
    extra = ev.loc[ev["timestamp"] < t].sample(40, random_state=0).copy()
    extra["timestamp"] = (t + pd.to_timedelta(np.arange(40) * 3600, unit="s")).as_unit("us")
    extra["like"] = np.float32(1.0)
    repo2 = fw.build_repo(tmp_path / "run2", items, pd.concat([ev, extra]).sort_values("timestamp", kind="stable"))
    edf = pd.DataFrame([(u, i, ts) for u in range(1, 6) for i in (100, 110, 120)
                        for ts in (t, t - pd.Timedelta(hours=5), fw.START + pd.Timedelta(days=9))],
                       columns=["user_id", "item_id", "event_timestamp"])
    a = repo.historical(edf, FULL_SERVICE)
    b = repo2.historical(edf, FULL_SERVICE)
    early = edf["event_timestamp"] <= t
    pd.testing.assert_frame_equal(a.loc[early], b.loc[early])
    assert not a.loc[~early, "user_impressions"].equals(b.loc[~early, "user_impressions"])


def _entity_df(fw, items, seed=1, n=400):
    """Examples at many times within days: random seconds, exact midnights, 1 us before/after, creation times."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 8, n)  # user 7 is unknown
    item_ids = rng.choice(np.append(items["item_id"].to_numpy(), 99999), n)
    secs = rng.uniform(-1, 11, n) * 86400
    t = (fw.START + pd.to_timedelta(secs, unit="s")).as_unit("us")
    t = pd.Series(t)
    day = t.dt.floor("D")
    kind = rng.integers(0, 5, n)
    t = t.where(kind != 1, day)  # exactly 00:00
    t = t.where(kind != 2, day - pd.Timedelta(microseconds=1))
    t = t.where(kind != 3, day + pd.Timedelta(microseconds=1))
    edf = pd.DataFrame({"user_id": users.astype(np.int64), "item_id": item_ids.astype(np.int64),
                        "event_timestamp": t})
    # late items at, just before/after their (off-grid) creation time and later that day
    late = items.iloc[-3:]
    extra = [(u, i, c + pd.Timedelta(off)) for u in (1, 2) for i, c in zip(late["item_id"], late["event_timestamp"])
             for off in ("0us", "-1us", "1us", "3h", "-3h", "20h")]
    edf = pd.concat([edf, pd.DataFrame(extra, columns=["user_id", "item_id", "event_timestamp"])],
                    ignore_index=True)
    edf["event_timestamp"] = pd.to_datetime(edf["event_timestamp"], utc=True).dt.as_unit("us")
    edf["label"] = np.arange(len(edf)) % 2
    return edf.sample(frac=1.0, random_state=seed)  # unsorted, non-default index


@pytest.fixture(scope="module")
def offgrid_repo(fw, tmp_path_factory):
    """The test world with some source rows OFF the daily grid: late items created at 06:00 + minutes,
    and every 5th user_stats snapshot moved to 07:00 of its day."""
    items, ev = fw.make_world()
    items = items.copy()
    ts = items["event_timestamp"].copy()
    ts.iloc[-3:] = fw.START + pd.Timedelta(days=6, hours=6) + pd.to_timedelta([0, 17, 45], unit="m")
    items["event_timestamp"] = ts
    tab = fw.tables(items, ev)
    us = tab["user_stats"].copy()
    move = np.arange(len(us)) % 5 == 0
    us.loc[move, "event_timestamp"] = us.loc[move, "event_timestamp"] + pd.Timedelta(hours=7)
    tab["user_stats"] = us
    repo = FeatureRepo(tmp_path_factory.mktemp("offgrid"), fw.feature_config())
    repo.write(tab)
    repo.apply()
    return repo, items


def test_query_times_are_reduced_and_exact(fw, offgrid_repo):
    repo, items = offgrid_repo
    edf = _entity_df(fw, items)
    keys = edf[["item_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    q = retrieval.query_times(repo.store, repo.paths()["item_embedding"], "item_embedding", "item_id", keys)
    t = keys["event_timestamp"]
    assert ((q == t) | (q == t.dt.floor("D")) | (q < t)).all() and (q <= t).all()
    assert q.nunique() < t.nunique() // 4
    # examples of a late item on its creation day after creation query at the creation time (not at 00:00)
    created = keys["item_id"].map(dict(zip(items["item_id"], items["event_timestamp"])))
    late = keys["item_id"].isin(items["item_id"].iloc[-3:])
    after = late & (t >= created) & (t.dt.floor("D") < created)
    assert after.any() and (q[after] == created[after]).all()


def test_reduced_feast_queries_equal_exact_path(fw, offgrid_repo, monkeypatch):
    repo, items = offgrid_repo
    edf = _entity_df(fw, items)
    sizes = []
    orig = retrieval._feast_view

    def counting(store, path, view, key, feats, keys):
        sizes.append((view, len(keys)))
        return orig(store, path, view, key, feats, keys)

    monkeypatch.setattr(retrieval, "_feast_view", counting)
    fast = repo.historical(edf, FULL_SERVICE, reduce_times=True)  # the default on the file store only
    n_fast = dict(sizes)
    sizes.clear()
    exact = repo.historical(edf, FULL_SERVICE, reduce_times=False)
    n_exact = dict(sizes)
    pd.testing.assert_frame_equal(fast, exact)
    pd.testing.assert_frame_equal(fast, repo.historical(edf, FULL_SERVICE, engine="asof"))
    assert list(fast.index) == list(edf.index) and (fast["label"] == edf["label"]).all()
    assert set(n_fast) == set(n_exact) == set(SOURCES)
    for view in n_fast:  # 7 users x 12 days, 41 items x 12 days of (key, day) pairs for ~400 examples
        assert n_fast[view] < n_exact[view] / (3 if view.startswith("user") else 1.2), (view, n_fast, n_exact)
    # the frame is not trivial: known and unknown users/items, late items before and after creation
    assert fast["unknown_user"].any() and not fast["unknown_user"].all()
    assert fast["unknown_item"].any() and not fast["unknown_item"].all()
    assert fast["cos_mean"].notna().sum() > 100
