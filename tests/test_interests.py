"""Interest mining and point-in-time statistics: exact snapshot semantics, no leakage, clustering."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from recsys.interests import InterestConfig, cluster_interests, daily_snapshots, mine_interests, ward_linkage
from recsys.statistics import StatsConfig, item_stats, user_stats

START = pd.Timestamp("2024-01-01", tz="UTC")


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_items(n=40, d=16, seed=0):
    rng = np.random.default_rng(seed)
    e = unit(rng.normal(size=(n, d))).astype(np.float32)
    items = pd.DataFrame({"item_id": np.arange(100, 100 + n, dtype=np.int64), "embedding": list(e)})
    for lvl in range(3):
        items[f"sid_{lvl}"] = rng.integers(0, 3, n).astype(np.int64)
    items["model_version"] = "t"
    items["event_timestamp"] = START - pd.Timedelta(days=1)
    return items


def make_events(items, users=5, per_user=30, days=10, seed=1):
    rng = np.random.default_rng(seed)
    n = users * per_user
    ts = START + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")
    ev = pd.DataFrame({"user_id": rng.integers(1, users + 1, n).astype(np.int64),
                       "item_id": rng.choice(items["item_id"].to_numpy(), n),
                       "timestamp": ts.as_unit("us"), "like": (rng.random(n) < 0.6).astype(np.float32)})
    # events exactly at snapshot boundaries: they must only count from the NEXT snapshot on
    edge = pd.DataFrame({"user_id": [1, 2], "item_id": [100, 101], "timestamp": [START + pd.Timedelta(days=3)] * 2,
                         "like": [1.0, 1.0]}).astype({"like": np.float32})
    edge["timestamp"] = edge["timestamp"].dt.as_unit("us")
    return pd.concat([ev, edge]).sort_values("timestamp", kind="stable").reset_index(drop=True)


CFG = InterestConfig(prefix_dim=8, recent_n=5, k_max=3, window=50)


@pytest.fixture(scope="module")
def data():
    items = make_items()
    ev = make_events(items)
    snaps = daily_snapshots(START, START + pd.Timedelta(days=10))
    return items, ev, snaps


def test_snapshot_uses_only_events_strictly_before(data):
    items, ev, snaps = data
    pos = ev.loc[ev["like"] >= 1]
    out = mine_interests(pos, items, snaps, CFG)
    emb = dict(zip(items["item_id"], items["embedding"]))
    assert len(out) and out["event_timestamp"].isin(snaps).all()
    for row in out.itertuples():
        hist = pos.loc[(pos["user_id"] == row.user_id) & (pos["timestamp"] < row.event_timestamp)]
        hist = hist.sort_values(["timestamp", "item_id"], kind="stable")
        assert row.hist_len == len(hist)
        e = np.stack([emb[i] for i in hist["item_id"]]).astype(np.float64)
        np.testing.assert_allclose(row.mean_emb, unit(e.mean(axis=0)), atol=1e-5)
        np.testing.assert_allclose(row.last_emb, emb[hist["item_id"].iloc[-1]], atol=1e-7)
        age_days = (row.event_timestamp - hist["timestamp"]).dt.total_seconds().to_numpy() / 86400
        w = 0.5 ** (age_days / CFG.half_life_days)
        np.testing.assert_allclose(row.recency_emb, unit((w[:, None] * e).sum(axis=0)), atol=1e-5)
        recent = hist["item_id"].to_numpy()[::-1][: CFG.recent_n]
        np.testing.assert_array_equal(row.recent_items[: len(recent)], recent)
        assert (row.recent_items[len(recent):] == -1).all()
        assert abs(row.centroid_weights.sum() - 1) < 1e-5
        assert set(row.centroid_items[row.centroid_items >= 0]) <= set(hist["item_id"])
    # the boundary event at exactly day 3 is not in the day-3 snapshot of user 1
    u1 = out.loc[out["user_id"] == 1].set_index("event_timestamp")["hist_len"]
    day3 = START + pd.Timedelta(days=3)
    before = pos.loc[(pos["user_id"] == 1) & (pos["timestamp"] < day3)]
    assert u1.loc[u1.index <= day3].iloc[-1] == len(before)


def test_rows_only_when_history_changes(data):
    items, ev, snaps = data
    out = mine_interests(ev.loc[ev["like"] >= 1], items, snaps, CFG)
    for _, g in out.groupby("user_id"):
        assert (np.diff(g["hist_len"].to_numpy()) > 0).all()


def test_no_leakage_from_future_events(data):
    items, ev, snaps = data
    t = START + pd.Timedelta(days=5)
    rng = np.random.default_rng(7)
    future = pd.DataFrame({"user_id": rng.integers(1, 6, 40).astype(np.int64),
                           "item_id": rng.choice(items["item_id"].to_numpy(), 40),
                           "timestamp": (t + pd.to_timedelta(rng.uniform(0, 4 * 86400, 40), unit="s")).as_unit("us"),
                           "like": np.ones(40, np.float32)})
    future.loc[0, "timestamp"] = t  # an event exactly at t must not reach the snapshot at t
    more = pd.concat([ev, future]).sort_values("timestamp", kind="stable").reset_index(drop=True)
    for fn, count in ((lambda e: mine_interests(e.loc[e["like"] >= 1], items, snaps, CFG), "hist_len"),
                      (lambda e: item_stats(e, e["like"] >= 1, snaps), "item_impressions"),
                      (lambda e: user_stats(e, e["like"] >= 1, snaps), "user_impressions")):
        a_all, b_all = fn(ev), fn(more)
        a = a_all.loc[a_all["event_timestamp"] <= t].reset_index(drop=True)
        b = b_all.loc[b_all["event_timestamp"] <= t].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        assert b_all[count].sum() > a_all[count].sum()  # the future events did change later snapshots


def test_clusters_find_separated_interests():
    rng = np.random.default_rng(0)
    d = 32
    topics = unit(rng.normal(size=(3, d)))
    x = unit(np.repeat(topics, [30, 20, 10], axis=0) + 0.15 * rng.normal(size=(60, d)))
    w = np.ones(60)
    w[50:] = 5.0  # the smallest topic is the most recent: recency weight makes it heavy
    clusters = cluster_interests(x, w, InterestConfig(k_max=4))
    assert len(clusters) == 3
    shares = [s for _, s in clusters]
    assert abs(sum(shares) - 1) < 1e-9 and shares == sorted(shares, reverse=True)
    assert clusters[0][0] >= 50 and abs(clusters[0][1] - 50 / 100) < 1e-9
    assert len(cluster_interests(x, w, InterestConfig(k_max=2))) == 2
    from scipy.cluster.hierarchy import linkage

    np.testing.assert_allclose(ward_linkage(x), linkage(x, "ward"), atol=1e-10)


def test_stats_counts_and_smoothing(data):
    items, ev, snaps = data
    pos = ev["like"] >= 1
    cfg = StatsConfig(prior_strength=4.0)
    out = item_stats(ev, pos, snaps, cfg)
    for row in out.sample(20, random_state=0).itertuples():
        before = ev["timestamp"] < row.event_timestamp
        mine = before & (ev["item_id"] == row.item_id)
        assert row.item_impressions == mine.sum() and row.item_positives == (mine & pos).sum()
        prior = ((before & pos).sum() + 1) / (before.sum() + 2)
        expect = (row.item_positives + 4.0 * prior) / (row.item_impressions + 4.0)
        assert abs(row.item_positive_rate - expect) < 1e-6
    u = user_stats(ev, pos, snaps)
    assert list(u.columns) == ["user_id", "event_timestamp", "user_impressions", "user_positives",
                               "user_positive_rate"]
    assert str(u["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_mining_speed():
    """~100 users x 60 days x 200 positives each: well under a few seconds of CPU per 100 users."""
    rng = np.random.default_rng(0)
    items = make_items(n=500, d=64)
    users, per = 100, 200
    ts = START + pd.to_timedelta(np.sort(rng.uniform(0, 60 * 86400, users * per)), unit="s")
    ev = pd.DataFrame({"user_id": rng.integers(0, users, users * per).astype(np.int64),
                       "item_id": rng.choice(items["item_id"].to_numpy(), users * per), "timestamp": ts})
    t0 = time.process_time()
    out = mine_interests(ev, items, daily_snapshots(START, START + pd.Timedelta(days=60)), InterestConfig())
    cpu = time.process_time() - t0
    assert len(out) > 5000
    assert cpu < 20, f"mining took {cpu:.1f}s CPU"
