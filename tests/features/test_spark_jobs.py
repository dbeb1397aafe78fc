"""The Spark batch jobs (features.spark_jobs on a local[2] session) give exactly the local path's tables: the
tiny world with events on snapshot boundaries and late users, and every rating of MovieLens-small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.interests import InterestConfig, daily_snapshots, mine_interests
from features.spark_jobs import INTEREST_TYPES, spark_entity_stats, spark_mine_interests
from features.statistics import StatsConfig, item_stats, user_stats

pytestmark = pytest.mark.spark



def assert_interests_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) == list(INTEREST_TYPES)
    assert len(a) == len(b) > 0
    for c in a.columns:
        if a[c].dtype == object:
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a[c], b[c])), c
        else:
            pd.testing.assert_series_equal(a[c], b[c], check_exact=True)


def _both_stats(spark, ev: pd.DataFrame, pos: pd.Series, snaps, cfg: StatsConfig) -> None:
    events = ev.assign(positive=pos.to_numpy(bool))
    for local, key, prefix in ((item_stats, "item_id", "item"), (user_stats, "user_id", "user")):
        expected = local(ev, pos, snaps, cfg)
        got = spark_entity_stats(spark, events, snaps, key, prefix, cfg)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert len(expected) > 0


def test_tiny_world_tables_equal_the_local_path(spark, fw):
    items, ev = fw.make_world(seed=3)
    _, edge, _ = fw.make_history(seed=4)  # two likes exactly on a snapshot boundary
    ev = pd.concat([ev, edge[edge["item_id"].isin(items["item_id"])]]).sort_values("timestamp", kind="stable")
    ev = ev.reset_index(drop=True)
    snaps = daily_snapshots(fw.START, fw.START + pd.Timedelta(days=10))
    pos = ev["like"] >= 1
    _both_stats(spark, ev, pos, snaps, StatsConfig(prior_strength=3.0))
    expected = mine_interests(ev.loc[pos], items, snaps, fw.ICFG, sid_levels=3)
    for buckets in (1, 5):  # however the users are bucketed
        got = spark_mine_interests(spark, ev.loc[pos], items, snaps, fw.ICFG, sid_levels=3, buckets=buckets)
        assert_interests_equal(got, expected)
    assert expected["user_id"].nunique() == ev.loc[pos, "user_id"].nunique()


def test_movielens_tables_equal_the_local_path(spark, movielens_dir):
    ratings = pd.read_csv(movielens_dir / "ratings.csv")
    ev = pd.DataFrame({"user_id": ratings["userId"].astype(np.int64), "item_id": ratings["movieId"].astype(np.int64),
                       "timestamp": pd.to_datetime(ratings["timestamp"], unit="s", utc=True).dt.as_unit("us")})
    pos = pd.Series(ratings["rating"].to_numpy() >= 4)
    rng = np.random.default_rng(0)
    ids = np.unique(ev["item_id"])
    emb = rng.normal(size=(len(ids), 32)).astype(np.float32)
    items = pd.DataFrame({"item_id": ids, "embedding": list(emb / np.linalg.norm(emb, axis=1, keepdims=True)),
                          **{f"sid_{k}": rng.integers(0, 16, len(ids)) for k in range(2)}})
    snaps = daily_snapshots(ev["timestamp"].min(), ev["timestamp"].max() + pd.Timedelta(days=1))
    _both_stats(spark, ev, pos, snaps, StatsConfig())
    cfg = InterestConfig(prefix_dim=16, recent_n=5, window=30)
    expected = mine_interests(ev.loc[pos], items, snaps, cfg, sid_levels=2)
    assert_interests_equal(spark_mine_interests(spark, ev.loc[pos], items, snaps, cfg, sid_levels=2), expected)
