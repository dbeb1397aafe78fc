"""Materialization through Feast's Spark compute engine (FeatureConfig.batch_engine spark, local[2]) leaves the
online store the local writer leaves: sqlite tables byte for byte and the same Redis frames, over two incremental
windows (the second one continuing from the first), idempotent on a rerun, with the interval in the registry."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

pytestmark = pytest.mark.spark

WINDOWS = (5, 9)  # days after fw.START: materialize up to day 5, then on to day 9



def _sqlite_rows(repo) -> dict[str, list]:
    conn = sqlite3.connect(repo.data_dir / "online_store.db")
    return {name: conn.execute(f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM "
                               f"{repo.cfg.project}_{name} ORDER BY entity_key, feature_name").fetchall()
            for name in repo.paths()}


def _materialize_twice(repo, fw) -> list[dict]:
    return [repo.materialize(fw.START + pd.Timedelta(days=d)) for d in WINDOWS]


@pytest.mark.parametrize("offline_store", ["duckdb", "spark"])
def test_spark_engine_writes_the_local_sqlite_rows(spark, fw, world, tmp_path, offline_store):
    items, ev = world
    local = fw.build_repo(tmp_path / "local", items, ev)
    spark = fw.build_repo(tmp_path / "spark", items, ev, project=local.cfg.project, batch_engine="spark",
                          offline_store=offline_store)
    assert "type: spark.engine" in (spark.repo_dir / "feature_store.yaml").read_text()
    local_runs, spark_runs = _materialize_twice(local, fw), _materialize_twice(spark, fw)
    for a, b in zip(local_runs, spark_runs):  # the same rows in each window, the same entities written
        assert a["rows"] == b["rows"] and a["written"] == b["written"]
    assert sum(spark_runs[1]["rows"].values()) > 0  # the second window continued, it had rows of its own
    rows = _sqlite_rows(spark)
    assert rows == _sqlite_rows(local) and all(rows.values())
    again = spark.materialize(fw.START + pd.Timedelta(days=WINDOWS[-1]))
    assert again["total_rows"] == 0 and _sqlite_rows(spark) == rows  # idempotent
    view = spark.store.get_feature_view("user_interests")
    assert max(e for _, e in view.materialization_intervals).date() == (fw.START + pd.Timedelta(days=9)).date()


def test_spark_engine_into_redis_serves_the_local_frames(spark, fw, world, redis_server, tmp_path):
    items, ev = world
    t = fw.START + pd.Timedelta(days=WINDOWS[-1])
    cands = [*items["item_id"], 99999]
    local = fw.build_repo(tmp_path / "local", items, ev)
    local.materialize(t)
    redis = fw.build_repo(tmp_path / "redis", items, ev, online_store="redis", redis_connection=redis_server,
                          batch_engine="spark", offline_store="spark")
    _materialize_twice(redis, fw)
    for u in (1, 3, 6, 424242):
        pd.testing.assert_frame_equal(redis.online(u, cands), local.online(u, cands))
    fw.assert_online_equals_offline(redis, [1, 3], cands, t)
