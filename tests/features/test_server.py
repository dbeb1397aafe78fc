"""The HTTP endpoint (`recsys features http`), started as a real server process on a loopback port: the rows equal
FeatureRepo.online's, malformed requests get 422 with the message, and the server refuses an empty online store."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from features.definitions import SERVICE_BY_VARIANT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/rank-features", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _start(run_dir, port):
    return subprocess.Popen([sys.executable, "-m", "recsys.cli", "features", "http", "-r", str(run_dir),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def served(fw, tmp_path_factory):
    items, ev = fw.make_world()
    run_dir = tmp_path_factory.mktemp("run")
    repo = fw.build_repo(run_dir, items, ev)
    repo.materialize(fw.START + pd.Timedelta(days=9))
    port = _free_port()
    proc = _start(run_dir, port)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                assert json.loads(r.read())["status"] == "ok"
                break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {proc.communicate()[0]}")
            time.sleep(0.3)
    yield repo, port
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.parametrize("variant", list(SERVICE_BY_VARIANT))
def test_rows_equal_the_online_frame(served, variant):
    repo, port = served
    service = SERVICE_BY_VARIANT[variant]
    cands = [141, 100, 555555, 103]
    for user in (1, 424242):
        status, body = _post(port, {"user_id": user, "candidates": cands, "service": service})
        assert status == 200 and body["service"] == service
        frame = repo.online(user, cands, service)
        assert body["columns"] == list(frame.columns) and len(body["rows"]) == len(cands)
        for got, want in zip(body["rows"], frame.itertuples(index=False, name=None), strict=True):
            for g, w in zip(got, want, strict=True):
                if isinstance(w, float | np.floating) and math.isnan(w):
                    assert g is None
                else:
                    assert g == w


def test_malformed_requests_get_422_with_the_reason(served):
    _, port = served
    status, body = _post(port, {"user_id": 1, "candidates": [], "service": SERVICE_BY_VARIANT["match"]})
    assert status == 422 and "empty" in body["detail"]
    status, body = _post(port, {"user_id": 1, "candidates": [100], "service": "nope_v9"})
    assert status == 422 and "nope_v9" in body["detail"]
    status, body = _post(port, {"user_id": "12a", "candidates": [100]})
    assert status == 422 and "12a" in body["detail"]


def test_refuses_to_start_without_materialized_rows(fw, tmp_path):
    from typer.testing import CliRunner

    from recsys.cli import app

    items, ev = fw.make_world()
    fw.build_repo(tmp_path, items, ev)
    result = CliRunner().invoke(app, ["features", "http", "-r", str(tmp_path), "--port", str(_free_port())])
    assert result.exit_code == 2 and "materialize" in result.output


def test_serve_answers_a_stream_of_requests_in_one_process(served, tmp_path):
    from typer.testing import CliRunner

    from recsys.cli import app

    repo, _ = served
    reqs = [{"user_id": 1, "candidates": [100, 141]}, {"user_id": "2", "candidates": [555555],
                                                       "service": SERVICE_BY_VARIANT["baseline"]}]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in reqs) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["features", "serve", "-r", str(repo.run_dir), "--requests", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(lines) == 2
    want = repo.online(2, [555555], SERVICE_BY_VARIANT["baseline"])
    assert lines[1]["columns"] == list(want.columns) and lines[1]["rows"][0][:2] == [2, 555555]
    assert len(lines[0]["rows"]) == 2
    path.write_text(json.dumps(reqs[0]) + "\n{\"user_id\": 1}\n")
    bad = runner.invoke(app, ["features", "serve", "-r", str(repo.run_dir), "--requests", str(path)])
    assert bad.exit_code == 2 and "request line 2" in bad.output
