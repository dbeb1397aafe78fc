"""`recsys run --set engine=spark` runs the batch jobs on a local Spark session (the CRE model's inference and
semantic IDs, the feature stage's tables, materialization through Feast's Spark engine) and gives the local path's
item embeddings, feature tables, online store and results table (the engine is not in the fingerprint: a finished
stage is reused, so the test forces the reruns)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pandas as pd
import pytest

pytestmark = pytest.mark.spark

TABLES = ("user_interests", "item_stats", "user_stats")


def _sources(run) -> dict[str, pd.DataFrame]:
    data = run / "feature_repo" / "data"
    return {t: pd.read_parquet(data / f"{t}.parquet") for t in TABLES}


def _online(run) -> list:
    conn = sqlite3.connect(run / "feature_repo" / "data" / "online_store.db")
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name != "
                                         "'recsys_online_token' ORDER BY name")]  # not the file's own token
    return [conn.execute(f"SELECT * FROM {t} ORDER BY entity_key, feature_name").fetchall() for t in tables]


def _table(run) -> list[dict]:
    keys = ("variant", "auc", "auc_lo", "auc_hi", "gauc", "auc_diff_vs_baseline")
    rows = json.loads((run / "stages" / "ranking.json").read_text())["table"]
    return [{k: r.get(k) for k in keys} for r in rows]


def test_spark_engine_gives_the_local_results_table(tiny_run, tmp_path, cli):
    """The CRE, feature and ranking stages of one copy of the shared run, forced on each engine in turn (the shared
    run's own stages may have been rerun by other tests: the two paths are compared on the same upstream)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    args = ["run", "--config", "configs/tiny.yaml", "--run-dir", str(run), "--stage", "ranking",
            "--force", "cre", "--force", "features", "--force", "ranking"]
    local = cli(args)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    embeddings = run / "cre" / "item_embeddings.parquet"
    local_emb, local_sources, local_online, local_table = (pd.read_parquet(embeddings), _sources(run), _online(run),
                                                           _table(run))
    local_features = json.loads((run / "stages" / "features.json").read_text())
    assert all("spark" not in built for built in local_features["sets"].values())
    for db in run.glob("**/feature_repo/data/online_store.db"):  # so Feast's Spark engine writes every row
        db.unlink()
    spark = cli([*args, "--set", "engine=spark"])
    assert spark.returncode == 0, spark.stdout[-3000:] + spark.stderr[-3000:]
    features = json.loads((run / "stages" / "features.json").read_text())
    assert features["fingerprint"] == local_features["fingerprint"]   # where, not what: the same fingerprint
    for name, built in features["sets"].items():                      # and the set's jobs ran on Spark
        assert built["spark"]["master"] == "local[2]" and built["spark"]["jobs"] >= 3, name
    cre = json.loads((run / "stages" / "cre.json").read_text())
    assert cre["spark"]["jobs"] >= 2                                  # inference and semantic IDs
    assert "type: spark.engine" in (run / "feature_repo" / "feature_store.yaml").read_text()
    pd.testing.assert_frame_equal(pd.read_parquet(embeddings), local_emb, check_exact=True)
    spark_sources = _sources(run)
    for name in TABLES:
        pd.testing.assert_frame_equal(spark_sources[name], local_sources[name], check_exact=True, obj=name)
    assert _online(run) == local_online and any(local_online)
    assert _table(run) == local_table and len(local_table) > 0
