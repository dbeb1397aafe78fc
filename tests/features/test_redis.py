"""The Redis online store, against a real redis-server: one namespace per repository, a store switch
re-materializes everything, incremental and idempotent materialization, clear errors without client or server."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from features.repo import FeatureRepo
from recsys.errors import ConfigError, DataError

USERS = [1, 3, 6, 424242]


def _cands(items) -> list[int]:
    return [*items["item_id"], 99999]


def test_two_repositories_in_one_server_keep_their_own_values(fw, redis_server, tmp_path):
    t = fw.START + pd.Timedelta(days=8)
    worlds = {name: fw.make_world(seed=seed) for name, seed in (("main", 0), ("content_only", 1))}
    repos = {name: fw.build_repo(tmp_path / name, *w, online_store="redis", redis_connection=redis_server)
             for name, w in worlds.items()}
    assert repos["main"].cfg.project != repos["content_only"].cfg.project  # drawn per repository
    for repo in repos.values():
        assert repo.materialize(t)["total_rows"] > 0
    frames = {name: fw.assert_online_equals_offline(repo, USERS, _cands(worlds[name][0]), t)
              for name, repo in repos.items()}
    # the worlds differ (other embeddings, other events), so do the served values
    assert not frames["main"][1]["cos_mean"].equals(frames["content_only"][1]["cos_mean"])
    # the namespace is kept in feature_config.json: a reopened repository serves from its own keys
    reopened = FeatureRepo(repos["main"].run_dir)
    assert reopened.cfg.project == repos["main"].cfg.project
    pd.testing.assert_frame_equal(reopened.online(1, _cands(worlds["main"][0])), frames["main"][1])


def test_switching_sqlite_to_redis_and_back_rematerializes(fw, world, redis_server, tmp_path):
    items, ev = world
    t = fw.START + pd.Timedelta(days=7)
    cands = _cands(items)
    sqlite = fw.build_repo(tmp_path, items, ev)
    first = sqlite.materialize(t)
    on_sqlite = {u: sqlite.online(u, cands) for u in USERS}

    redis = FeatureRepo(tmp_path, fw.feature_config(online_store="redis", redis_connection=redis_server))
    assert redis.cfg.project == sqlite.cfg.project
    redis.write(fw.tables(items, ev))
    redis.apply()
    with pytest.raises(DataError, match="redis online store holds nothing .* run `recsys features materialize`"):
        redis.online(1, cands)  # not materialized into the new store yet: refused, not NaN for every id
    switched = redis.materialize(t)
    assert switched["rows"] == first["rows"] and switched["total_rows"] > 0  # everything, not 0 rows
    for u, frame in fw.assert_online_equals_offline(redis, USERS, cands, t).items():
        pd.testing.assert_frame_equal(frame, on_sqlite[u])

    back = FeatureRepo(tmp_path, fw.feature_config())
    assert back.materialize(t)["rows"] == first["rows"]
    fw.assert_online_equals_offline(back, USERS, cands, t)


def test_redis_materialize_is_incremental_and_idempotent(fw, world, redis_server, tmp_path):
    items, ev = world
    cands = _cands(items)
    repo = fw.build_repo(tmp_path, items, ev, online_store="redis", redis_connection=redis_server)
    t1, t2 = fw.START + pd.Timedelta(days=5), fw.START + pd.Timedelta(days=9)
    first = repo.materialize(t1)
    assert first["rows"]["item_embedding"] == 37  # the 3 late items are created on day 6
    before = fw.assert_online_equals_offline(repo, USERS, cands, t1)
    assert repo.materialize(t1)["total_rows"] == 0
    for u in USERS:
        pd.testing.assert_frame_equal(repo.online(u, cands), before[u])
    later = repo.materialize(t2)
    assert later["rows"]["item_embedding"] == 3 and 0 < later["total_rows"]
    fw.assert_online_equals_offline(repo, USERS, cands, t2)


def test_rewritten_sources_are_rematerialized(fw, world, redis_server, tmp_path):
    """New embeddings keep their timestamps: an incremental window would skip them and serve the old vectors."""
    items, ev = world
    t = fw.START + pd.Timedelta(days=8)
    repo = fw.build_repo(tmp_path, items, ev, online_store="redis", redis_connection=redis_server)
    repo.materialize(t)
    retrained = items.assign(embedding=list(-np.stack(items["embedding"])))
    repo.write(fw.tables(retrained, ev))
    again = repo.materialize(t)
    assert again["rows"]["item_embedding"] == len(items) and again["rows"]["user_interests"] > 0
    assert again["rows"]["item_stats"] == 0  # unchanged sources stay incremental
    fw.assert_online_equals_offline(repo, USERS, _cands(items), t)


def test_missing_redis_client_is_a_config_error_before_anything_changes(fw, world, tmp_path, monkeypatch):
    items, ev = world
    sqlite = fw.build_repo(tmp_path / "run", items, ev)
    yaml = (sqlite.repo_dir / "feature_store.yaml").read_text()
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` raises ImportError, as without the package
    with pytest.raises(ConfigError, match="features.online_store is 'redis' but the redis client is not installed"):
        FeatureRepo(tmp_path / "run", fw.feature_config(online_store="redis"))
    assert (sqlite.repo_dir / "feature_store.yaml").read_text() == yaml
    with pytest.raises(ConfigError, match="features.online_store"):
        FeatureRepo(tmp_path / "new", fw.feature_config(online_store="redis"))
    assert not (tmp_path / "new").exists()


def test_unreachable_redis_server_names_the_connection(fw, world, tmp_path):
    items, ev = world
    conn = f"127.0.0.1:{fw.free_port()}"  # nothing listens there
    repo = fw.build_repo(tmp_path, items, ev, online_store="redis", redis_connection=conn)
    with pytest.raises(ConfigError, match=f"features.redis_connection '{conn}': cannot reach the Redis server"):
        repo.materialize(fw.START + pd.Timedelta(days=5))
