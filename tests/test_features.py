"""Feast repository, match features and serving on a tiny hand-made world (file offline store)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import match_features as mf
from features.definitions import SERVICES, FeatureConfig, build_definitions
from features.repo import FeatureRepo
from features.serving import rank_frame
from recsys.data.errors import DataError
from recsys.interests import InterestConfig, daily_snapshots, mine_interests
from recsys.statistics import item_stats, user_stats

START = pd.Timestamp("2024-01-01", tz="UTC")
D = 16
ICFG = InterestConfig(prefix_dim=8, recent_n=5, k_max=3, window=50)


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_world(seed=0, n_items=40, users=6, per_user=30, days=10):
    """Items 100.. (items >= 100 + n_items - 3 are created on day 6), users 1..users, events over `days` days."""
    rng = np.random.default_rng(seed)
    e = unit(rng.normal(size=(n_items, D))).astype(np.float32)
    items = pd.DataFrame({"item_id": np.arange(100, 100 + n_items, dtype=np.int64), "embedding": list(e)})
    for lvl in range(3):
        items[f"sid_{lvl}"] = rng.integers(0, 3, n_items).astype(np.int64)
    items["model_version"] = "test-v1"
    created = np.full(n_items, START - pd.Timedelta(days=1))
    created[-3:] = START + pd.Timedelta(days=6)
    items["event_timestamp"] = pd.to_datetime(created, utc=True).as_unit("us")
    n = users * per_user
    old = items["item_id"].to_numpy()[:-3]
    ev = pd.DataFrame({"user_id": rng.integers(1, users + 1, n).astype(np.int64), "item_id": rng.choice(old, n),
                       "timestamp": (START + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")).as_unit("us"),
                       "like": (rng.random(n) < 0.6).astype(np.float32)})
    # user 6 only appears from day 7 on
    ev.loc[ev["user_id"] == 6, "timestamp"] = (START + pd.Timedelta(days=7, hours=1)).as_unit("us")
    return items, ev.sort_values("timestamp", kind="stable").reset_index(drop=True)


def tables(items, ev, days=11):
    snaps = daily_snapshots(START, START + pd.Timedelta(days=days))
    pos = ev["like"] >= 1
    return {"item_embedding": items, "user_interests": mine_interests(ev.loc[pos], items, snaps, ICFG),
            "item_stats": item_stats(ev, pos, snaps), "user_stats": user_stats(ev, pos, snaps)}


def build_repo(run_dir, items, ev, **cfg):
    repo = FeatureRepo(run_dir, FeatureConfig(embedding_dim=D, **cfg))
    repo.write(tables(items, ev))
    repo.apply()
    return repo


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def repo(world, tmp_path_factory):
    items, ev = world
    return build_repo(tmp_path_factory.mktemp("run"), items, ev)


# ------------------------------------------------------------------ match features (pure numpy)
def _frames():
    rng = np.random.default_rng(3)
    k, n, p = 2, 3, 8
    cands = unit(rng.normal(size=(4, D))).astype(np.float32)
    user = pd.DataFrame({
        "mean_emb": list(unit(rng.normal(size=(4, D))).astype(np.float32)),
        "recency_emb": list(unit(rng.normal(size=(4, D))).astype(np.float32)),
        "last_emb": list(unit(rng.normal(size=(4, D))).astype(np.float32)),
        "centroids": list(unit(rng.normal(size=(4, k, D))).astype(np.float32).reshape(4, -1)),
        "centroid_weights": [np.array([0.7, 0.3], np.float32)] * 3 + [np.array([1.0, 0.0], np.float32)],
        "recent_items": [np.array([5, 6, -1])] * 4,
        "recent_prefix": list(np.concatenate([unit(cands[:, :p])[:, None, :],  # item 5 == candidate's prefix
                                              unit(-cands[:, :p])[:, None, :],
                                              np.zeros((4, 1, p))], axis=1).astype(np.float32).reshape(4, -1)),
        "recent_sids": [np.array([1, 2, 3, 1, 2, 4, -1, -1, -1])] * 4,
        "centroid_sids": [np.array([1, 5, 5, -1, -1, -1])] * 4,
    })
    item = pd.DataFrame({"embedding": list(cands), "sid_0": [1, 1, 2, 1], "sid_1": [2, 2, 2, 5],
                         "sid_2": [3, 4, 3, 0]})
    return user, item, k


def test_match_features_equal_direct_numpy():
    user, item, k = _frames()
    c = unit(np.stack(item["embedding"]))
    for name, col in (("cos_mean", "mean_emb"), ("cos_recency", "recency_emb"), ("cos_last", "last_emb")):
        expect = (unit(np.stack(user[col])) * c).sum(axis=1)
        np.testing.assert_allclose(mf.MATCH_FEATURES[name](user, item), expect, rtol=1e-12)
    cents = unit(np.stack(user["centroids"]).reshape(4, k, D))
    cos = np.einsum("rkd,rd->rk", cents, c)
    w = np.stack(user["centroid_weights"]).astype(np.float64)
    expect_max = np.array([cos[r, :2].max() for r in range(3)] + [cos[3, 0]])
    np.testing.assert_allclose(mf.cos_centroid_max(user, item), expect_max, rtol=1e-12)
    np.testing.assert_allclose(mf.cos_centroid_wavg(user, item), (cos * w).sum(1) / w.sum(1), rtol=1e-12)
    # recent item 5 has the candidate's own prefix (cos 1), item 6 its negation (cos -1), third slot is padding
    np.testing.assert_array_equal(mf.hist_sim_count(user, item), np.ones(4))
    frame = mf.compute_match_frame(user.join(item))
    assert list(frame.columns) == list(mf.MATCH_FEATURES)


def test_sid_match_is_hierarchical_prefix_equality():
    user, item, _ = _frames()
    m = mf.compute_match_frame(user, item, "sid")
    # recent sids: (1,2,3), (1,2,4); candidates: (1,2,3) (1,2,4) (2,2,3) (1,5,0)
    np.testing.assert_array_equal(m["sid_recent_match_l0"], [1, 1, 0, 1])
    np.testing.assert_array_equal(m["sid_recent_match_l1"], [1, 1, 0, 0])
    np.testing.assert_array_equal(m["sid_recent_match_l2"], [1, 1, 0, 0])  # (2,2,3): l2 equal but l0 differs
    # top medoid sids (1,5,5)
    np.testing.assert_array_equal(m["sid_top_centroid_match_l0"], [1, 1, 0, 1])
    np.testing.assert_array_equal(m["sid_top_centroid_match_l1"], [0, 0, 0, 1])
    np.testing.assert_array_equal(m["sid_top_centroid_match_l2"], [0, 0, 0, 0])


def test_match_features_missing_inputs_give_documented_defaults():
    user, item, _ = _frames()
    user.loc[1, :] = None  # unknown user
    item.loc[2, :] = None  # unknown item
    m = mf.compute_match_frame(user, item)
    for name in mf.EMBEDDING_MATCH_FEATURES:
        if name == "hist_sim_count":
            assert m.loc[1, name] == 0 and m.loc[2, name] == 0
        else:
            assert np.isnan(m.loc[1, name]) and np.isnan(m.loc[2, name]) and not np.isnan(m.loc[0, name])
    for name in mf.SID_MATCH_FEATURES:
        assert m.loc[1, name] == 0 and m.loc[2, name] == 0


def test_odfv_schema_derives_from_registry(monkeypatch, tmp_path):
    objs = {o.name: o for o in build_definitions({s: tmp_path / f"{s}.parquet" for s in
                                                  ("item_embedding", "user_interests", "item_stats",
                                                   "user_stats")}, FeatureConfig(embedding_dim=D))}
    assert [f.name for f in objs["match_v1"].features] == list(mf.EMBEDDING_MATCH_FEATURES)
    assert [f.name for f in objs["sid_match_v1"].features] == list(mf.SID_MATCH_FEATURES)
    monkeypatch.setitem(mf.EMBEDDING_MATCH_FEATURES, "cos_last_squared",
                        lambda u, i: mf.cos_last(u, i) ** 2)
    objs = {o.name: o for o in build_definitions({s: tmp_path / f"{s}.parquet" for s in
                                                  ("item_embedding", "user_interests", "item_stats",
                                                   "user_stats")}, FeatureConfig(embedding_dim=D))}
    assert "cos_last_squared" in [f.name for f in objs["match_v1"].features]
    assert set(SERVICES) <= set(objs)


# ------------------------------------------------------------------ repository
def test_feature_store_yaml(tmp_path):
    FeatureRepo(tmp_path / "a").write_config()
    text = (tmp_path / "a" / "feature_repo" / "feature_store.yaml").read_text()
    assert "type: file" in text and "type: sqlite" in text and "registry: data/registry.db" in text
    FeatureRepo(tmp_path / "b", FeatureConfig(offline_store="spark")).write_config()
    text = (tmp_path / "b" / "feature_repo" / "feature_store.yaml").read_text()
    assert "type: spark" in text and 'spark.master: "local[2]"' in text


def test_wrong_embedding_dimension_rejected(world, repo, tmp_path):
    items, _ = world
    bad = items.copy()
    bad["embedding"] = [np.zeros(D + 3, np.float32) if i == 5 else v for i, v in enumerate(bad["embedding"])]
    with pytest.raises(DataError, match=r"item 105 has 19 dims, expected 16"):
        FeatureRepo(tmp_path / "x", FeatureConfig(embedding_dim=D)).write({"item_embedding": bad})
    # a config whose dimension differs from the registered one is refused too
    with pytest.raises(DataError, match="registered dimension 16"):
        FeatureRepo(repo.run_dir, FeatureConfig(embedding_dim=32)).write({"item_embedding": items})


def brute_hist_len(ev, user, t):
    """Positives of `user` before the last daily snapshot <= t."""
    snap = t.floor("D")
    return int(((ev["user_id"] == user) & (ev["timestamp"] < snap) & (ev["like"] >= 1)).sum())


def test_historical_is_point_in_time(world, repo):
    items, ev = world
    day4 = START + pd.Timedelta(days=4)
    times = [day4, day4 - pd.Timedelta(microseconds=1), day4 + pd.Timedelta(hours=13), START + pd.Timedelta(days=8)]
    rows = [(u, 100 + u, t) for u in range(1, 7) for t in times]
    edf = pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"])
    edf["label"] = 1.0
    h = repo.historical(edf, "ranking_match_v1")
    assert list(h["label"]) == list(edf["label"]) and (h["user_id"].to_numpy() == edf["user_id"]).all()
    for r in h.itertuples():
        assert r.hist_len == brute_hist_len(ev, r.user_id, r.event_timestamp), r
        snap = r.event_timestamp.floor("D")
        before = (ev["item_id"] == r.item_id) & (ev["timestamp"] < snap)
        assert r.item_impressions == before.sum()
    # user 6 has no events before day 7: its early rows survive with defaults and the flag
    u6 = h.loc[(h["user_id"] == 6) & (h["event_timestamp"] < START + pd.Timedelta(days=7))]
    assert len(u6) == 3 and u6["unknown_user"].all() and (u6["hist_len"] == 0).all()
    assert u6["cos_mean"].isna().all()
    # the pandas as-of engine gives the identical frame
    pd.testing.assert_frame_equal(h, repo.historical(edf, "ranking_match_v1", engine="asof"))


def test_historical_keeps_rows_sharing_user_and_time(world, repo):
    """Feast's file store collapses rows sharing (join key, timestamp) (feast#6787); ours must not."""
    t = START + pd.Timedelta(days=5, hours=2)
    edf = pd.DataFrame({"user_id": [1] * 5 + [2] * 2, "item_id": [100, 101, 102, 103, 100, 100, 139],
                        "event_timestamp": [t] * 7})
    h = repo.historical(edf, "ranking_match_sid_v1")
    assert len(h) == 7 and list(h["item_id"]) == list(edf["item_id"])
    assert h.loc[0, "cos_mean"] == h.loc[4, "cos_mean"]  # duplicate rows: same features
    assert h.loc[6, "unknown_item"] and h.loc[6, "sid_0"] == -1  # item 139 is created on day 6


def test_no_leakage_end_to_end(world, repo, tmp_path):
    items, ev = world
    t = START + pd.Timedelta(days=5)
    extra = ev.loc[ev["timestamp"] < t].sample(40, random_state=0).copy()
    extra["timestamp"] = (t + pd.to_timedelta(np.arange(40) * 3600, unit="s")).as_unit("us")
    extra["like"] = np.float32(1.0)
    repo2 = build_repo(tmp_path / "run2", items, pd.concat([ev, extra]).sort_values("timestamp", kind="stable"))
    edf = pd.DataFrame([(u, i, ts) for u in range(1, 6) for i in (100, 110, 120)
                        for ts in (t, t - pd.Timedelta(hours=5), START + pd.Timedelta(days=9))],
                       columns=["user_id", "item_id", "event_timestamp"])
    a = repo.historical(edf, "ranking_match_sid_v1")
    b = repo2.historical(edf, "ranking_match_sid_v1")
    early = edf["event_timestamp"] <= t
    pd.testing.assert_frame_equal(a.loc[early], b.loc[early])
    assert not a.loc[~early, "user_impressions"].equals(b.loc[~early, "user_impressions"])


def _online_vs_offline(repo, users, cands, t, service):
    for u in users:
        on = rank_frame(repo.store, u, cands, service)
        edf = pd.DataFrame({"user_id": u, "item_id": cands, "event_timestamp": t})
        off = repo.historical(edf, service).drop(columns="event_timestamp")
        pd.testing.assert_frame_equal(on.reset_index(drop=True), off.reset_index(drop=True), check_exact=False,
                                      rtol=1e-12, atol=0)


def test_materialize_online_matches_offline_and_is_idempotent(world, tmp_path):
    items, ev = world
    repo = build_repo(tmp_path / "run", items, ev)
    t1 = START + pd.Timedelta(days=5)
    first = repo.materialize(t1)
    assert first["total_rows"] > 0 and first["rows"]["item_embedding"] == 37  # 3 items are created later
    cands = list(range(100, 140)) + [99999]
    users = [1, 3, 6, 424242]
    for service in SERVICES:
        _online_vs_offline(repo, users, cands, t1, service)
    before = {u: rank_frame(repo, u, cands, "ranking_match_sid_v1") for u in users}
    again = repo.materialize(t1)
    assert again["total_rows"] == 0
    for u in users:
        pd.testing.assert_frame_equal(before[u], rank_frame(repo, u, cands, "ranking_match_sid_v1"))
    # incremental: a later end brings new rows (new items, user 6), and entities without new rows keep theirs
    t2 = START + pd.Timedelta(days=9)
    later = repo.materialize(t2)
    assert 0 < later["total_rows"] < first["total_rows"] + later["total_rows"]
    assert later["rows"]["item_embedding"] == 3
    _online_vs_offline(repo, users, cands, t2, "ranking_match_sid_v1")
    # also through the CLI entry points
    from features.materialize import materialize_repo

    assert materialize_repo(repo.run_dir, t2)["total_rows"] == 0


def test_unknown_ids_get_defaults_and_flags(repo):
    repo.materialize(START + pd.Timedelta(days=9))
    f = repo.online(987654, [100, 555555], "ranking_match_sid_v1")
    assert list(f["item_id"]) == [100, 555555] and f["unknown_user"].all()
    assert list(f["unknown_item"]) == [False, True]
    assert (f["user_impressions"] == 0).all() and (f["hist_len"] == 0).all() and f["user_positive_rate"].isna().all()
    assert f["cos_mean"].isna().all() and (f["hist_sim_count"] == 0).all() and (f["sid_recent_match_l0"] == 0).all()
    assert f.loc[1, "sid_0"] == -1 and f.loc[1, "item_impressions"] == 0
    assert f["item_impressions"].dtype == np.int64


def test_feast_cli_apply_from_generated_repo(world, tmp_path):
    """`feast apply` run inside the generated repo directory registers the same objects."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from feast import FeatureStore

    items, ev = world
    repo = FeatureRepo(tmp_path / "cli", FeatureConfig(embedding_dim=D))
    repo.write(tables(items, ev))
    feast_bin = Path(sys.executable).parent / "feast"
    res = subprocess.run([str(feast_bin), "apply"], cwd=repo.repo_dir, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-2000:]
    fs = FeatureStore(repo_path=str(repo.repo_dir))
    assert {s.name for s in fs.list_feature_services()} == set(SERVICES)
    assert {v.name for v in fs.list_on_demand_feature_views()} == {"match_v1", "sid_match_v1"}
