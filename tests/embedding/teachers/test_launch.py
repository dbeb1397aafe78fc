"""The project launcher (embedding.teachers.launch) with small stand-in workers: the environment it gives them, a
store that only listens on loopback, a failing worker stopping the others, SIGTERM stopping everything, and user
errors. The teachers trained through it are tested in test_train.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from embedding.teachers.launch import LAUNCHER_ENV, WorkerFailed, launch, listen
from recsys.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def _wait_for(paths: list[Path], proc: subprocess.Popen | None = None) -> None:
    while not all(p.exists() for p in paths):
        assert proc is None or proc.poll() is None, "the launcher exited before its workers started"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_workers_get_their_rank_and_a_loopback_store(tmp_path):
    """Each worker sees its rank and the store; the parent's only listening socket is the store, on 127.0.0.1."""
    worker = _script(f"""
        import datetime, json, os, psutil
        import torch.distributed as dist
        env = {{k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                              "MASTER_PORT", "{LAUNCHER_ENV}")}}
        store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), 2, is_master=False,
                              timeout=datetime.timedelta(seconds=60))
        store.set("rank" + env["RANK"], "here")
        store.wait(["rank0", "rank1"])
        parent = psutil.Process(os.getppid())
        env["parent_listens"] = sorted({{(c.laddr.ip, c.laddr.port) for c in parent.net_connections("tcp")
                                         if c.status == psutil.CONN_LISTEN}})
        open(os.path.join({str(tmp_path)!r}, "rank" + env["RANK"] + ".json"), "w").write(json.dumps(env))
    """)
    launch(worker, 2)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    port = seen[0]["MASTER_PORT"]
    for r, env in enumerate(seen):
        assert env | {"parent_listens": None} == {
            "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, LAUNCHER_ENV: "1", "parent_listens": None}
        assert env["parent_listens"] == [["127.0.0.1", int(port)]]


@pytest.mark.parametrize("stream, code", [("sys.stderr", 1), ("sys.stdout", 2)])
def test_a_failing_worker_stops_the_others(tmp_path, stream, code):
    """Rank 1 fails while rank 0 would sleep for minutes: launch raises with rank 1's status and last lines (from
    stderr, or stdout where the CLI prints its errors), and rank 0 is no longer running."""
    pid0 = tmp_path / "pid0"
    worker = _script(f"""
        import os, pathlib, sys, time
        pid0 = pathlib.Path({str(pid0)!r})
        if os.environ["RANK"] == "0":
            pid0.write_text(str(os.getpid()))
            time.sleep(300)
        while not pid0.exists():
            time.sleep(0.05)
        print("rank 1 starts", file={stream})
        print("boom from rank 1", file={stream})
        sys.exit({code})
    """)
    with pytest.raises(WorkerFailed) as info:
        launch(worker, 2)
    err = info.value
    assert (err.rank, err.returncode, err.exit_status) == (1, code, code)
    assert err.tail == ["rank 1 starts", "boom from rank 1"]
    assert f"rank 1 exited with status {code}" in str(err) and str(err).endswith("boom from rank 1")
    assert _gone(int(pid0.read_text()))


def test_sigterm_stops_every_worker(tmp_path):
    pids = [tmp_path / f"pid{r}" for r in (0, 1)]
    worker = (f"import os, time; open(os.path.join({str(tmp_path)!r}, 'pid' + os.environ['RANK']), 'w')"
              ".write(str(os.getpid())); time.sleep(300)")
    parent = ("import sys; from embedding.teachers.launch import launch; "
              f"launch([sys.executable, '-c', {worker!r}], 2)")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env, cwd=REPO)
    _wait_for(pids, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert all(_gone(int(p.read_text())) for p in pids)


def test_user_errors(monkeypatch):
    with pytest.raises(ConfigError, match="--nproc 0"):
        launch(["true"], 0)
    with pytest.raises(ConfigError, match="203.0.113.7"):          # TEST-NET-3: not an address of this machine
        listen("203.0.113.7", 0)
    with pytest.raises(ConfigError, match="--master-port"):
        with listen("127.0.0.1", 0) as taken:
            listen("127.0.0.1", taken.getsockname()[1])
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="torchrun"):
        launch(["true"], 2)
