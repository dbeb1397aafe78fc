"""The Feast repository of a run directory: config files, write checks, apply, incremental materialize, CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore

from features.definitions import FULL_SERVICE, SERVICES, FeatureConfig, build_definitions
from features.materialize import materialize_repo
from features.repo import FeatureRepo
from recsys.errors import DataError


def test_feature_store_yaml(tmp_path):
    FeatureRepo(tmp_path / "a", FeatureConfig()).write_config()
    text = (tmp_path / "a" / "feature_repo" / "feature_store.yaml").read_text()
    assert "type: duckdb" in text and "type: sqlite" in text and "registry: data/registry.db" in text
    FeatureRepo(tmp_path / "b", FeatureConfig(offline_store="spark")).write_config()
    text = (tmp_path / "b" / "feature_repo" / "feature_store.yaml").read_text()
    assert "type: spark" in text and 'spark.master: "local[2]"' in text
    assert not list((tmp_path / "b" / "feature_repo").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_reopened_repo_reads_its_config_back(fw, tmp_path):
    cfg = fw.feature_config(4, project="p4")
    FeatureRepo(tmp_path, cfg).write_config()
    assert FeatureRepo(tmp_path).cfg == cfg


def test_wrong_embedding_dimension_rejected(fw, world, repo, tmp_path):
    items, _ = world
    bad = items.copy()
    bad["embedding"] = [np.zeros(fw.D + 3, np.float32) if i == 5 else v for i, v in enumerate(bad["embedding"])]
    with pytest.raises(DataError, match=r"item 105 has 19 dims, expected 16"):
        FeatureRepo(tmp_path / "x", fw.feature_config()).write({"item_embedding": bad})
    # a config whose shape differs from the registered one is refused too
    with pytest.raises(DataError, match="embedding_dim 32 in the config differs from the registered embedding_dim 16"):
        FeatureRepo(repo.run_dir, FeatureConfig(embedding_dim=32, prefix_dim=8)).write({"item_embedding": items})
    with pytest.raises(DataError, match="sid_levels 4 in the config differs from the registered sid_levels 3"):
        FeatureRepo(repo.run_dir, fw.feature_config(4)).write({"item_stats": fw.tables(*world)["item_stats"]})


def test_sources_must_match_the_configured_shape(fw, world, tmp_path):
    items, ev = world
    tab = fw.tables(items, ev)
    with pytest.raises(DataError, match="3 semantic-ID levels but FeatureConfig.sid_levels is 4"):
        FeatureRepo(tmp_path / "a", fw.feature_config(4)).write({"item_embedding": items})
    # interests mined with 3 levels do not fit a 2-level repository, nor a prefix of another length
    with pytest.raises(DataError, match="FeatureConfig.sid_levels is 2"):
        FeatureRepo(tmp_path / "b", fw.feature_config(2)).write({"user_interests": tab["user_interests"]})
    other_prefix = FeatureConfig(embedding_dim=fw.D, prefix_dim=4)
    with pytest.raises(DataError, match="recent_prefix.*FeatureConfig.prefix_dim is 4"):
        FeatureRepo(tmp_path / "c", other_prefix).write({"user_interests": tab["user_interests"]})


def test_materialize_online_matches_offline_and_is_idempotent(fw, world, tmp_path):
    items, ev = world
    repo = fw.build_repo(tmp_path / "run", items, ev)
    t1 = fw.START + pd.Timedelta(days=5)
    first = repo.materialize(t1)
    assert first["total_rows"] > 0 and first["rows"]["item_embedding"] == 37  # 3 items are created later
    cands = list(range(100, 140)) + [99999]
    users = [1, 3, 6, 424242]
    for service in SERVICES:
        fw.assert_online_equals_offline(repo, users, cands, t1, service)
    before = {u: repo.online(u, cands) for u in users}
    again = repo.materialize(t1)
    assert again["total_rows"] == 0
    for u in users:
        pd.testing.assert_frame_equal(before[u], repo.online(u, cands))
    # incremental: a later end brings new rows (new items, user 6), and entities without new rows keep theirs
    t2 = fw.START + pd.Timedelta(days=9)
    later = repo.materialize(t2)
    assert 0 < later["total_rows"] < first["total_rows"] + later["total_rows"]
    assert later["rows"]["item_embedding"] == 3
    fw.assert_online_equals_offline(repo, users, cands, t2, FULL_SERVICE)
    # also through the CLI entry point, on the reopened repository
    assert materialize_repo(repo.run_dir, t2)["total_rows"] == 0


def test_a_recreated_sqlite_store_is_materialized_again(fw, world, tmp_path):
    """A deleted online store that `feast apply` (or the features stage) creates again, empty, is not mistaken for
    the one materialized.json describes: materialize fills it again instead of finding nothing new."""
    items, ev = world
    repo = fw.build_repo(tmp_path / "run", items, ev)
    t = fw.START + pd.Timedelta(days=9)
    first = repo.materialize(t)
    served = repo.online(1, [100, 101])
    (repo.data_dir / "online_store.db").unlink()
    repo = fw.build_repo(tmp_path / "run", items, ev)  # write + apply: the file is back, with empty tables
    assert (repo.data_dir / "online_store.db").is_file() and repo.materialized() == {}
    assert repo.materialize(t)["rows"] == first["rows"]
    pd.testing.assert_frame_equal(repo.online(1, [100, 101]), served)


def test_sources_are_hashed_once_where_written_and_again_only_when_changed_elsewhere(fw, world, tmp_path,
                                                                                    monkeypatch):
    """The write records each source's digest; materialize reuses it while the file's stat matches, and a source
    replaced behind the repository's back (same timestamps, other vectors) is hashed again and rematerialized."""
    import features.repo as repo_module

    items, ev = world
    t = fw.START + pd.Timedelta(days=8)
    repo = fw.build_repo(tmp_path / "run", items, ev)
    hashed = []
    real_digest = repo_module._digest
    monkeypatch.setattr(repo_module, "_digest", lambda path: hashed.append(path.name) or real_digest(path))
    assert repo.materialize(t)["rows"]["item_embedding"] == len(items)
    assert hashed == []
    path = repo.paths()["item_embedding"]
    table = pq.read_table(path)
    flipped = pa.array([[-x for x in v] for v in table["embedding"].to_pylist()], type=table["embedding"].type)
    pq.write_table(table.set_column(table.schema.get_field_index("embedding"), "embedding", flipped), path)
    again = repo.materialize(t)
    assert hashed == ["item_embedding.parquet"]
    assert again["rows"]["item_embedding"] == len(items) and again["rows"]["item_stats"] == 0
    fw.assert_online_equals_offline(repo, [1, 3], [*items["item_id"]], t, FULL_SERVICE)


def test_feast_cli_apply_from_generated_repo(fw, world, tmp_path):
    """`feast apply` run inside the generated repo directory registers the same objects."""
    items, ev = world
    repo = FeatureRepo(tmp_path / "cli", fw.feature_config())
    repo.write(fw.tables(items, ev))
    feast_bin = Path(sys.executable).parent / "feast"
    res = subprocess.run([str(feast_bin), "apply"], cwd=repo.repo_dir, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-2000:]
    fs = FeatureStore(repo_path=str(repo.repo_dir))
    assert {s.name for s in fs.list_feature_services()} == set(SERVICES)
    assert {v.name for v in fs.list_on_demand_feature_views()} == {"match_v1", "sid_match_v1"}


@pytest.mark.parametrize("how", ["move", "copy"])
def test_moved_or_copied_run_directory_keeps_retrieval_and_serving(fw, world, tmp_path, how):
    items, ev = world
    t = fw.START + pd.Timedelta(days=8)
    repo = fw.build_repo(tmp_path / "run", items, ev)
    repo.materialize(t)
    cands = [*items["item_id"], 99999]
    edf = pd.DataFrame([(u, i, t - pd.Timedelta(hours=h)) for u in (1, 2, 6) for i in cands[::4] for h in (0, 30)],
                       columns=["user_id", "item_id", "event_timestamp"])
    offline, online = repo.historical(edf), {u: repo.online(u, cands) for u in (1, 2)}
    assert str(tmp_path) not in (repo.repo_dir / "feature_store.yaml").read_text()
    (shutil.move if how == "move" else shutil.copytree)(tmp_path / "run", tmp_path / "elsewhere")
    if how == "copy":
        shutil.rmtree(tmp_path / "run")  # the copy must not read the original's files
    moved = FeatureRepo(tmp_path / "elsewhere")
    pd.testing.assert_frame_equal(moved.historical(edf), offline)
    pd.testing.assert_frame_equal(moved.historical(edf, engine="asof"), offline)
    for u, frame in online.items():
        pd.testing.assert_frame_equal(moved.online(u, cands), frame)
    assert moved.materialize(t)["total_rows"] == 0  # the online store moved with it


def test_opening_a_directory_without_repository_creates_nothing(tmp_path):
    for run_dir in (tmp_path / "missing", tmp_path / "empty"):
        if run_dir.name == "empty":
            run_dir.mkdir()
        with pytest.raises(DataError, match=f"no feature repository at {run_dir}; run the features stage"):
            FeatureRepo(run_dir)
    assert not (tmp_path / "missing").exists() and not list((tmp_path / "empty").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="no feature repository at"):
        FeatureRepo(tmp_path / "file")
    with pytest.raises(DataError, match="is a file, not a directory"):
        FeatureRepo(tmp_path / "file", FeatureConfig()).write_config()


def test_registry_with_absolute_source_paths_is_reanchored(fw, world, tmp_path):
    """A registry naming another directory's sources (absolute paths, as older repositories wrote them) is
    re-registered with this directory's: retrieval never reads another run's data."""
    items, ev = world
    repo = fw.build_repo(tmp_path / "run", items, ev, offline_store="file")  # the store that registers relative paths
    repo.store.apply(build_definitions({s: p.resolve() for s, p in repo.paths().items()}, repo.cfg))
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = FeatureRepo(tmp_path / "moved")
    t = fw.START + pd.Timedelta(days=5)
    edf = pd.DataFrame({"user_id": [1, 2], "item_id": [100, 101], "event_timestamp": [t, t]})
    got = moved.historical(edf)
    assert moved.store.get_feature_view("item_stats").batch_source.path == "data/item_stats.parquet"
    assert not got["unknown_user"].any() and not got["unknown_item"].any()


@pytest.mark.parametrize("n", [0, 1, 2500])
def test_sources_are_written_in_time_order_row_group_by_row_group(tmp_path, n):
    """The streamed writer gives the file that sorting the whole frame and writing it at once gives: stable time
    order (ties keep their input order), row groups of SOURCE_ROW_GROUP, UTC microseconds, the row_time column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.repo import SOURCE_ROW_GROUP, _write_source
    from features.schema import ROW_TIME

    rng = np.random.default_rng(n)
    df = pd.DataFrame({"user_id": np.arange(n, dtype=np.int64),
                       "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
                       + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),  # many ties
                       "vec": [rng.random(3, dtype=np.float32) for _ in range(n)]})
    _write_source(df, tmp_path / "streamed.parquet", with_row_time=True)
    want = df.assign(event_timestamp=df["event_timestamp"].dt.as_unit("us")).sort_values(
        "event_timestamp", kind="stable", ignore_index=True)
    want[ROW_TIME] = want["event_timestamp"].astype(np.int64)
    pq.write_table(pa.Table.from_pandas(want, preserve_index=False), tmp_path / "whole.parquet",
                   row_group_size=SOURCE_ROW_GROUP)
    streamed, whole = pq.ParquetFile(tmp_path / "streamed.parquet"), pq.ParquetFile(tmp_path / "whole.parquet")
    assert streamed.read().equals(whole.read()) and streamed.read().num_rows == n
    assert [streamed.metadata.row_group(g).num_rows for g in range(streamed.num_row_groups)] == [
        whole.metadata.row_group(g).num_rows for g in range(whole.num_row_groups)]

