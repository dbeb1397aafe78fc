"""`recsys run --set features.engine=spark` runs the feature stage's batch jobs on a local Spark session and gives
the local path's feature tables and results table (the engine is not in the fingerprint: a finished stage is
reused, so the test forces the rerun)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

pytestmark = pytest.mark.spark

TABLES = ("user_interests", "item_stats", "user_stats")


def _sources(run) -> dict[str, pd.DataFrame]:
    data = run / "feature_repo" / "data"
    return {t: pd.read_parquet(data / f"{t}.parquet") for t in TABLES}


def _table(run) -> list[dict]:
    keys = ("variant", "auc", "auc_lo", "auc_hi", "gauc", "auc_diff_vs_baseline")
    rows = json.loads((run / "stages" / "ranking.json").read_text())["table"]
    return [{k: r.get(k) for k in keys} for r in rows]


def test_spark_engine_gives_the_local_results_table(tiny_run, tmp_path, cli):
    """The feature and ranking stages of one copy of the shared run, forced on each engine in turn (the shared
    run's own stages may have been rerun by other tests: the two paths are compared on the same upstream)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    args = ["run", "--config", "configs/tiny.yaml", "--run-dir", str(run), "--stage", "ranking",
            "--force", "features", "--force", "ranking"]
    local = cli(args)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    local_sources, local_table = _sources(run), _table(run)
    local_features = json.loads((run / "stages" / "features.json").read_text())
    assert all("spark" not in built for built in local_features["sets"].values())
    spark = cli([*args, "--set", "features.engine=spark"])
    assert spark.returncode == 0, spark.stdout[-3000:] + spark.stderr[-3000:]
    features = json.loads((run / "stages" / "features.json").read_text())
    assert features["fingerprint"] == local_features["fingerprint"]   # where, not what: the same fingerprint
    for name, built in features["sets"].items():                      # and the set's jobs ran on Spark
        assert built["spark"]["master"] == "local[2]" and built["spark"]["jobs"] >= 3, name
    spark_sources = _sources(run)
    for name in TABLES:
        pd.testing.assert_frame_equal(spark_sources[name], local_sources[name], check_exact=True, obj=name)
    assert _table(run) == local_table and len(local_table) > 0
