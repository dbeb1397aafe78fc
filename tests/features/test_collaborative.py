"""The collaborative score of the baseline (FeatureConfig.cf_dim > 0): the ID teacher's user and item vectors as
Feast views, `cf_score` = their cosine in every service, the same online, offline and in memory, point-in-time
(unknown before the vectors' time), NaN for an id the teacher never saw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definitions import FULL_SERVICE, SERVICES
from features.inmemory import InMemoryFeatures
from features.repo import FeatureRepo
from features.serving import service_layout
from features.tables import collaborative_tables
from recsys.data.schema import PositiveRule
from recsys.errors import DataError

CF_DIM = 8


def _teacher(fw, items, stamp, seed=3):
    """Vectors for users 1..5 (not 6) and the first 30 items, stamped `stamp` (the teacher's train_end)."""
    rng = np.random.default_rng(seed)
    users = np.arange(1, 6, dtype=np.int64)
    known = items["item_id"].to_numpy()[:30]

    def table(col, ids):
        vectors = fw.unit(rng.normal(size=(len(ids), CF_DIM))).astype(np.float32)
        return pd.DataFrame({col: ids, "embedding": list(vectors), "model_version": "two_tower-test",
                             "event_timestamp": pd.Series([stamp] * len(ids), dtype="datetime64[us, UTC]")})
    return table("user_id", users), table("item_id", known)


@pytest.fixture
def cf_repo(fw, tmp_path):
    items, ev = fw.make_world(seed=5)
    stamp = fw.START + pd.Timedelta(days=3)
    uvec, ivec = _teacher(fw, items, stamp)
    repo = FeatureRepo(tmp_path / "run", fw.feature_config(cf_dim=CF_DIM))
    repo.write({**fw.tables(items, ev), **collaborative_tables(uvec, ivec)})
    repo.apply()
    return repo, items, ev, stamp, uvec, ivec


def test_cf_score_is_the_cosine_of_the_teacher_vectors_point_in_time(fw, cf_repo):
    repo, items, ev, stamp, uvec, ivec = cf_repo
    cands = [*items["item_id"], 99999]
    users = [1, 5, 6, 424242]
    edf = pd.DataFrame([(u, i, t) for u in users for i in cands
                        for t in (stamp - pd.Timedelta(hours=1), stamp + pd.Timedelta(days=2))],
                       columns=["user_id", "item_id", "event_timestamp"])
    got = repo.historical(edf, SERVICES[0])  # the baseline service carries it
    u = dict(zip(uvec["user_id"], uvec["embedding"]))
    v = dict(zip(ivec["item_id"], ivec["embedding"]))
    expect = [float(np.dot(u[a].astype(np.float64), v[b].astype(np.float64)))
              if t >= stamp and a in u and b in v else np.nan
              for a, b, t in edf.itertuples(index=False)]
    np.testing.assert_allclose(got["cf_score"].to_numpy(), expect, rtol=1e-6, atol=1e-7)
    assert got["cf_score"].notna().sum() == 2 * 30  # users 1 and 5 x the 30 known items, after the stamp only


def test_cf_score_online_equals_offline_and_in_memory(fw, cf_repo):
    repo, items, ev, stamp, uvec, ivec = cf_repo
    t = fw.START + pd.Timedelta(days=8)
    repo.materialize(t)
    cands = [*items["item_id"], 99999]
    for service in SERVICES:
        frames = fw.assert_online_equals_offline(repo, [1, 6, 424242], cands, t, service)
        assert "cf_score" in frames[1].columns and frames[1]["cf_score"].notna().sum() == 30
    mem = InMemoryFeatures(items, PositiveRule(column="like", min_value=1.0), service_layout(repo.store, FULL_SERVICE),
                           repo.cfg, fw.ICFG, collaborative=tuple(collaborative_tables(uvec, ivec).values()))
    users = np.array([1, 2, 6, 424242])
    grid = np.stack([np.append(items["item_id"].to_numpy()[25:36], 99999) for _ in users])
    for at in (stamp - pd.Timedelta(hours=5), t):
        edf = pd.DataFrame({"user_id": np.repeat(users, grid.shape[1]), "item_id": grid.reshape(-1),
                            "event_timestamp": at})
        want = repo.historical(edf, FULL_SERVICE).drop(columns="event_timestamp")
        pd.testing.assert_frame_equal(mem.frame(at, users, grid, ev), want, check_exact=True)
    with pytest.raises(ValueError, match="pass its user_cf and item_cf tables"):
        InMemoryFeatures(items, PositiveRule(column="like", min_value=1.0), {}, repo.cfg, fw.ICFG)


def test_collaborative_sources_are_checked_on_write(fw, cf_repo, tmp_path):
    repo, items, ev, stamp, uvec, ivec = cf_repo
    short = uvec.assign(embedding=[v[:4] for v in uvec["embedding"]])
    with pytest.raises(DataError, match="5 vectors of user_cf have the wrong dimension: user 1 has 4 dims, "
                                        "expected 8"):
        repo.write(collaborative_tables(short, ivec))
    plain = FeatureRepo(tmp_path / "plain", fw.feature_config())
    with pytest.raises(DataError, match=r"unknown feature sources \['item_cf', 'user_cf'\].*cf_dim > 0"):
        plain.write(collaborative_tables(uvec, ivec))
