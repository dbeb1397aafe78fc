"""FeatureRepo.historical's reduced Feast queries (reduce_times) give exactly the per-example-time answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definitions import FeatureConfig
from features.repo import FeatureRepo
from test_features import D, START, make_world, tables  # tests/ is on sys.path (pytest rootdir import)


def _entity_df(items, seed=1, n=400):
    """Examples at many times within days: random seconds, exact midnights, 1 us before/after, creation times."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 8, n)  # user 7 is unknown
    item_ids = rng.choice(np.append(items["item_id"].to_numpy(), 99999), n)
    secs = rng.uniform(-1, 11, n) * 86400
    t = (START + pd.to_timedelta(secs, unit="s")).as_unit("us")
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
def offgrid_repo(tmp_path_factory):
    """The test world with some source rows OFF the daily grid: late items created at 06:00 + minutes,
    and every 5th user_stats snapshot moved to 07:00 of its day."""
    items, ev = make_world()
    items = items.copy()
    ts = items["event_timestamp"].copy()
    ts.iloc[-3:] = START + pd.Timedelta(days=6, hours=6) + pd.to_timedelta([0, 17, 45], unit="m")
    items["event_timestamp"] = ts
    tab = tables(items, ev)
    us = tab["user_stats"].copy()
    move = np.arange(len(us)) % 5 == 0
    us.loc[move, "event_timestamp"] = us.loc[move, "event_timestamp"] + pd.Timedelta(hours=7)
    tab["user_stats"] = us
    repo = FeatureRepo(tmp_path_factory.mktemp("fast"), FeatureConfig(embedding_dim=D))
    repo.write(tab)
    repo.apply()
    return repo, items


def test_query_times_are_reduced_and_exact(offgrid_repo):
    repo, items = offgrid_repo
    edf = _entity_df(items)
    keys = edf[["item_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    q = repo._query_times("item_embedding", "item_id", keys)
    t = keys["event_timestamp"]
    assert ((q == t) | (q == t.dt.floor("D")) | (q < t)).all() and (q <= t).all()
    assert q.nunique() < t.nunique() // 4
    # examples of a late item on its creation day after creation query at the creation time (not at 00:00)
    created = dict(zip(items["item_id"], items["event_timestamp"]))
    late = keys["item_id"].isin(items["item_id"].iloc[-3:])
    c = keys.loc[late, "item_id"].map(created)
    after = late & (t >= keys["item_id"].map(created)) & (t.dt.floor("D") < keys["item_id"].map(created))
    assert (q[after] == keys.loc[after, "item_id"].map(created)).all() and after.any()
    assert len(c)


def test_reduced_feast_queries_equal_exact_path(offgrid_repo, monkeypatch):
    repo, items = offgrid_repo
    edf = _entity_df(items)
    sizes = []
    orig = FeatureRepo._feast_view

    def counting(self, view, key, feats, keys):
        sizes.append((view, len(keys)))
        return orig(self, view, key, feats, keys)

    monkeypatch.setattr(FeatureRepo, "_feast_view", counting)
    fast = repo.historical(edf, "ranking_match_sid_v1")
    n_fast = dict(sizes)
    sizes.clear()
    exact = repo.historical(edf, "ranking_match_sid_v1", reduce_times=False)
    n_exact = dict(sizes)
    pd.testing.assert_frame_equal(fast, exact)
    pd.testing.assert_frame_equal(fast, repo.historical(edf, "ranking_match_sid_v1", engine="asof"))
    assert list(fast.index) == list(edf.index) and (fast["label"] == edf["label"]).all()
    assert set(n_fast) == set(n_exact) == {"item_embedding", "user_interests", "item_stats", "user_stats"}
    for view in n_fast:  # 7 users x 12 days, 41 items x 12 days of (key, day) pairs for ~400 examples
        assert n_fast[view] < n_exact[view] / (3 if view.startswith("user") else 1.2), (view, n_fast, n_exact)
    # the frame is not trivial: known and unknown users/items, late items before and after creation
    assert fast["unknown_user"].any() and not fast["unknown_user"].all()
    assert fast["unknown_item"].any() and not fast["unknown_item"].all()
    assert fast["cos_mean"].notna().sum() > 100
