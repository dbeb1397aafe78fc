"""Shared test setup: offline environment, paths to shared data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECSYS_SHARED", REPO.parent / "shared"))
MOVIELENS = SHARED / "data" / "movielens-small"


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (MOVIELENS / "ratings.csv").is_file():
        pytest.fail(f"MovieLens-small not found at {MOVIELENS}; CI lays ../shared beside the repo")
    return MOVIELENS


def run_cli(args: list[str], cwd: Path = REPO, timeout: int = 900, env: dict | None = None):
    """`python -m recsys.cli ARGS` in a subprocess (the real entry point, its exit status and output)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "recsys.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="session")
def cli():
    """The CLI runner (a function: args -> CompletedProcess), shared by the tests that drive `recsys`."""
    return run_cli


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One full main job on configs/tiny.yaml, shared by every test that needs a finished run directory. Its
    results as first written are kept under <run>/../reference/ (tests may later rerun stages of the run)."""
    import shutil

    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    proc = run_cli(["run", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reference = run_dir.parent / "reference"
    shutil.copytree(run_dir / "stages", reference / "stages")
    shutil.copy(run_dir / "results.md", reference / "results.md")
    return run_dir


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session for every test that runs Spark in this process (a start costs ~7 s); Feast's
    Spark offline store and engine find it as the active session."""
    from recsys.spark import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()
