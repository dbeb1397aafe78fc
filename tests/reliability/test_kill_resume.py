"""kill -9 in the middle of each long stage, then rerun: the results equal an uninterrupted run's, and MLflow holds
no duplicate or orphan runs.

One run directory is killed in turn during encoding, embedding training, CRE, materialization and MLflow logging
(each moment is recognised from what the stage has written so far), resumed after each kill, and finally run to
the end. The uninterrupted reference is the session's tiny run (same config; checkpointing more often changes
when state is saved, not what is computed).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["--set", "embedding.train.checkpoint_every=10", "--set", "embedding.cre.checkpoint_every=5"]

pytestmark = pytest.mark.slow


def _marker(run: Path, stage: str) -> bool:
    return (run / "stages" / f"{stage}.json").is_file()


def _mlflow_runs(run: Path) -> int:
    db = run / "mlflow.db"
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("select count(*) from runs").fetchone()[0]
    except sqlite3.Error:
        return 0


def _online_rows(run: Path) -> int:
    db = run / "feature_repo" / "data" / "online_store.db"
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            tables = [t for (t,) in con.execute("select name from sqlite_master where type = 'table'")]
            return sum(con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables)
    except sqlite3.Error:
        return 0


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "encode": lambda r: any((r / "cache" / "encoders").rglob("shard-*.npz")) and not _marker(r, "encode"),
    "embedding": lambda r: (r / "embedding" / "checkpoint" / "state.pt").is_file() and not _marker(r, "embedding"),
    "cre": lambda r: (r / "cre" / "checkpoint" / "state.pt").is_file() and not _marker(r, "cre"),
    "materialization": lambda r: _online_rows(r) > 0 and not _marker(r, "features"),
    "mlflow logging": lambda r: _mlflow_runs(r) > 0 and not _marker(r, "ranking"),
}


def _run_and_kill(run: Path, when: Callable[[Path], bool], timeout: float = 600) -> bool:
    """Start the main job; SIGKILL it as soon as `when(run)` holds. True if it was killed, False if it ended."""
    proc = subprocess.Popen([sys.executable, "-m", "recsys.cli", "run", "--config", "configs/tiny.yaml",
                             "--run-dir", str(run), *OVERRIDES], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if when(run):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        pytest.fail("the main job did not finish in time")
    return False


def test_kill_9_then_rerun_gives_the_uninterrupted_results(tiny_run, cli, tmp_path):
    run = tmp_path / "killed"
    killed = {name: _run_and_kill(run, when) for name, when in KILL_POINTS.items()}
    assert all(killed.values()), f"some moments were never reached before the stage ended: {killed}"
    proc = cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(run), *OVERRIDES])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    reference = tiny_run.parent / "reference" / "stages"
    for stage, key in (("ranking", "table"), ("simulation", "summary")):
        ids = ["run_id"]  # MLflow run ids differ between any two runs
        got = pd.DataFrame(json.loads((run / "stages" / f"{stage}.json").read_text())[key]).drop(columns=ids,
                                                                                                   errors="ignore")
        want = pd.DataFrame(json.loads((reference / f"{stage}.json").read_text())[key]).drop(columns=ids,
                                                                                               errors="ignore")
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{stage} after kills")

    with sqlite3.connect(run / "mlflow.db") as con:
        # runs a rerun replaced are soft-deleted (lifecycle_stage 'deleted'; `mlflow gc` purges them)
        statuses = dict(con.execute("select status, count(*) from runs where lifecycle_stage = 'active' "
                                    "group by status").fetchall())
        variants = con.execute("select r.run_uuid, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
                               "where t.key = 'variant' and r.lifecycle_stage = 'active'").fetchall()
    assert "RUNNING" not in statuses, statuses
    names = [v for _, v in variants]
    assert len(names) == len(set(names)), f"duplicate variant runs: {sorted(names)}"
    expected = set(pd.DataFrame(json.loads((reference / "ranking.json").read_text())["table"])["variant"])
    assert set(names) == expected
