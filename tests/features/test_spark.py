"""The Spark offline store (local[2]) gives the same point-in-time features as the file store."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from features.definitions import FULL_SERVICE
from features.repo import FeatureRepo

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def repos(fw, tmp_path_factory, spark):
    items, ev = fw.make_world(seed=5)
    file_repo = fw.build_repo(tmp_path_factory.mktemp("file"), items, ev, offline_store="file")
    spark_repo = fw.build_repo(tmp_path_factory.mktemp("spark"), items, ev, offline_store="spark")
    return file_repo, spark_repo


def test_spark_historical_equals_file_store(fw, repos):
    file_repo, spark_repo = repos
    t = fw.START + pd.Timedelta(days=4, hours=6)
    edf = pd.DataFrame([(u, i, ts) for u in (1, 2, 6, 777) for i in (100, 105, 139, 9999)
                        for ts in (t, fw.START + pd.Timedelta(days=8), fw.START + pd.Timedelta(days=3))],
                       columns=["user_id", "item_id", "event_timestamp"])
    # raw Feast call on one view: spark returns tz-naive UTC timestamps, the file store tz-aware ones
    keys = edf[["user_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    refs = ["user_stats:user_impressions", "user_stats:user_positive_rate", "user_interests:hist_len"]
    raw = []
    for repo in (file_repo, spark_repo):
        df = repo.store.get_historical_features(entity_df=keys, features=refs).to_df()
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
        cols = [*keys.columns, *(r.split(":")[1] for r in refs)]
        raw.append(df.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)[cols])
    # Spark keeps every entity row; Feast 0.67's file store drops rows whose entity only has feature rows after
    # the entity timestamp (user 6 before day 7): the reason FeatureRepo.historical joins view by view.
    assert len(raw[1]) == len(keys) and len(raw[0]) < len(keys)
    both = raw[1].merge(raw[0], on=["user_id", "event_timestamp"], suffixes=("", "_file"))
    assert len(both) == len(raw[0])
    for r in refs:
        name = r.split(":")[1]
        pd.testing.assert_series_equal(both[name].astype(float), both[f"{name}_file"].astype(float),
                                       check_names=False)
    # the full service through FeatureRepo.historical (per-view joins + on-demand match features)
    a = file_repo.historical(edf, FULL_SERVICE)
    b = spark_repo.historical(edf, FULL_SERVICE)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert a["hist_len"].gt(0).any() and np.isfinite(a["cos_mean"]).any()


def test_moved_spark_repository_reads_its_own_sources(fw, repos, tmp_path):
    """Spark resolves relative paths against its working directory, so a Spark repository registers absolute
    paths and re-registers them when the directory moved."""
    file_repo, spark_repo = repos
    shutil.copytree(spark_repo.run_dir, tmp_path / "moved")
    moved = FeatureRepo(tmp_path / "moved")
    edf = pd.DataFrame({"user_id": [1, 2, 777], "item_id": [100, 139, 105],
                        "event_timestamp": [fw.START + pd.Timedelta(days=8)] * 3})
    got = moved.historical(edf, FULL_SERVICE)
    assert moved.store.get_feature_view("user_stats").batch_source.path == str(moved.paths()["user_stats"].resolve())
    pd.testing.assert_frame_equal(got, file_repo.historical(edf, FULL_SERVICE), check_exact=False, rtol=1e-12)
