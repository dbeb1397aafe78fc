"""Interest mining: exact snapshot semantics, no leakage, clustering, and the configured SID levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import cut_tree, linkage

from features.interests import InterestConfig, cluster_interests, mine_interests
from features.schema import sid_columns
from recsys.errors import DataError

CFG = InterestConfig(prefix_dim=8, recent_n=5, k_max=3, window=50)


def test_snapshot_uses_only_events_strictly_before(fw, data):
    items, ev, snaps = data
    pos = ev.loc[ev["like"] >= 1]
    out = mine_interests(pos, items, snaps, CFG, sid_levels=3)
    emb = dict(zip(items["item_id"], items["embedding"]))
    assert len(out) and out["event_timestamp"].isin(snaps).all()
    for row in out.itertuples():
        hist = pos.loc[(pos["user_id"] == row.user_id) & (pos["timestamp"] < row.event_timestamp)]
        hist = hist.sort_values(["timestamp", "item_id"], kind="stable")
        assert row.hist_len == len(hist)
        e = np.stack([emb[i] for i in hist["item_id"]]).astype(np.float64)
        np.testing.assert_allclose(row.mean_emb, fw.unit(e.mean(axis=0)), atol=1e-5)
        np.testing.assert_allclose(row.last_emb, emb[hist["item_id"].iloc[-1]], atol=1e-7)
        age_days = (row.event_timestamp - hist["timestamp"]).dt.total_seconds().to_numpy() / 86400
        w = 0.5 ** (age_days / CFG.half_life_days)
        np.testing.assert_allclose(row.recency_emb, fw.unit((w[:, None] * e).sum(axis=0)), atol=1e-5)
        recent = hist["item_id"].to_numpy()[::-1][: CFG.recent_n]
        np.testing.assert_array_equal(row.recent_items[: len(recent)], recent)
        assert (row.recent_items[len(recent):] == -1).all()
        assert abs(row.centroid_weights.sum() - 1) < 1e-5
        assert set(row.centroid_items[row.centroid_items >= 0]) <= set(hist["item_id"])
    # the boundary event at exactly day 3 is not in the day-3 snapshot of user 1
    u1 = out.loc[out["user_id"] == 1].set_index("event_timestamp")["hist_len"]
    day3 = fw.START + pd.Timedelta(days=3)
    before = pos.loc[(pos["user_id"] == 1) & (pos["timestamp"] < day3)]
    assert u1.loc[u1.index <= day3].iloc[-1] == len(before)


def test_rows_only_when_history_changes(data):
    items, ev, snaps = data
    out = mine_interests(ev.loc[ev["like"] >= 1], items, snaps, CFG, sid_levels=3)
    for _, g in out.groupby("user_id"):
        assert (np.diff(g["hist_len"].to_numpy()) > 0).all()


def test_no_leakage_from_future_events(fw, data):
    items, ev, snaps = data
    t = fw.START + pd.Timedelta(days=5)
    more = fw.with_future_events(items, ev, t)
    a_all = mine_interests(ev.loc[ev["like"] >= 1], items, snaps, CFG, sid_levels=3)
    b_all = mine_interests(more.loc[more["like"] >= 1], items, snaps, CFG, sid_levels=3)
    a = a_all.loc[a_all["event_timestamp"] <= t].reset_index(drop=True)
    b = b_all.loc[b_all["event_timestamp"] <= t].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert b_all["hist_len"].sum() > a_all["hist_len"].sum()  # the future events did change later snapshots


def test_clusters_find_separated_interests(fw):
    rng = np.random.default_rng(0)
    d = 32
    topics = fw.unit(rng.normal(size=(3, d)))
    x = fw.unit(np.repeat(topics, [30, 20, 10], axis=0) + 0.15 * rng.normal(size=(60, d)))
    w = np.ones(60)
    w[50:] = 5.0  # the smallest topic is the most recent: recency weight makes it heavy
    clusters = cluster_interests(x, w, InterestConfig(k_max=4))
    assert len(clusters) == 3
    shares = [s for _, s in clusters]
    assert abs(sum(shares) - 1) < 1e-9 and shares == sorted(shares, reverse=True)
    assert clusters[0][0] >= 50 and abs(clusters[0][1] - 50 / 100) < 1e-9
    assert len(cluster_interests(x, w, InterestConfig(k_max=2))) == 2


@pytest.mark.parametrize("seed", range(5))
def test_clusters_are_the_top_cut_of_the_ward_tree(fw, seed):
    """The clusters are the k subtrees left by undoing the top k-1 Ward merges (scipy cut_tree, another route)."""
    rng = np.random.default_rng(seed)
    x = fw.unit(rng.normal(size=(40, 8)))
    w = rng.random(40) + 0.1
    cfg = InterestConfig(k_max=4, cluster_distance=0.1)  # small: split as far as k_max allows
    clusters = cluster_interests(x, w, cfg)
    labels = cut_tree(linkage(x, "ward"), n_clusters=len(clusters))[:, 0]
    assert len(clusters) == 4
    for medoid, share in clusters:
        members = np.flatnonzero(labels == labels[medoid])
        assert share == pytest.approx(w[members].sum() / w.sum(), abs=1e-12)
        sq = ((x[members][:, None] - x[members][None]) ** 2).sum(-1).sum(1)  # medoid: least squared distance
        assert members[int(np.argmin(sq))] == medoid


@pytest.mark.parametrize("levels", [2, 4])
def test_medoid_and_recent_sids_carry_the_configured_levels(data, levels):
    items, ev, snaps = data
    items = items.drop(columns=sid_columns(3))
    rng = np.random.default_rng(levels)
    for col in sid_columns(levels):
        items[col] = rng.integers(0, 5, len(items)).astype(np.int64)
    out = mine_interests(ev.loc[ev["like"] >= 1], items, snaps, CFG, sid_levels=levels)
    sids = items.set_index("item_id")[sid_columns(levels)]
    for row in out.itertuples():
        rsid = row.recent_sids.reshape(CFG.recent_n, levels)
        real = row.recent_items >= 0
        np.testing.assert_array_equal(rsid[real], sids.loc[row.recent_items[real]].to_numpy())
        assert (rsid[~real] == -1).all()
        csid = row.centroid_sids.reshape(CFG.k_max, levels)
        known = row.centroid_items >= 0
        np.testing.assert_array_equal(csid[known], sids.loc[row.centroid_items[known]].to_numpy())
    with pytest.raises(DataError, match=f"{levels} semantic-ID levels but FeatureConfig.sid_levels is 3"):
        mine_interests(ev.loc[ev["like"] >= 1], items, snaps, CFG, sid_levels=3)
