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


def test_spark_engine_gives_the_local_results_table(tiny_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(run), "--set", "features.engine=spark",
                "--stage", "ranking", "--force", "features", "--force", "ranking"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    features = json.loads((run / "stages" / "features.json").read_text())
    assert features["fingerprint"] == json.loads((tiny_run / "stages" / "features.json").read_text())["fingerprint"]
    for name, built in features["sets"].items():                # where, not what: the same fingerprint, and the
        assert built["spark"]["master"] == "local[2]" and built["spark"]["jobs"] >= 3, name  # jobs ran on Spark
    local, spark = _sources(tiny_run), _sources(run)
    for name in TABLES:
        pd.testing.assert_frame_equal(spark[name], local[name], check_exact=True, obj=name)
    reference = json.loads((tiny_run.parent / "reference" / "stages" / "ranking.json").read_text())["table"]
    got = json.loads((run / "stages" / "ranking.json").read_text())["table"]
    keys = ("variant", "auc", "auc_lo", "auc_hi", "gauc", "auc_diff_vs_baseline")
    assert [{k: r.get(k) for k in keys} for r in got] == [{k: r.get(k) for k in keys} for r in reference]
