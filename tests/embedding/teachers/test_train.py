"""The teachers' training: learning, quality vs popularity, exports, determinism, train split only, the
`recsys teachers` command, and two launched processes matching one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
from typer.testing import CliRunner

from embedding.teachers import REPORT_NAME, load_vocabs, train_id_teacher, train_sequence_teacher
from embedding.teachers import export as ex
from embedding.teachers.data import UNKNOWN_INDEX, train_positives
from recsys.cli import app
from recsys.data.dataset import build_dataset, load_dataset, write_dataset
from recsys.data.schema import PositiveRule

REPO = Path(__file__).resolve().parents[3]
# the tiny budget of the `teacher_cfg` fixture, as run-config overrides of the `teachers` section
OVERRIDES = ["teachers.seed=3", "teachers.two_tower.epochs=10", "teachers.two_tower.batch=256",
             "teachers.sasrec.epochs=12", "teachers.sasrec.max_len=20"]


def test_loss_falls(trained):
    _, id_res, seq_res = trained
    for res in (id_res, seq_res):
        assert len(res.loss_history) > 1
        assert res.loss_history[-1] < 0.8 * res.loss_history[0], (res.kind, res.loss_history)


def test_teachers_beat_popularity(trained):
    _, id_res, seq_res = trained
    m = seq_res.metrics
    pop = m["popularity/recall@10"]
    assert id_res.metrics["id/recall@10"] > pop + 0.15, id_res.metrics
    assert m["sequence/recall@10"] > pop + 0.15, m
    assert m["sequence/ndcg@10"] > m["popularity/ndcg@10"]
    # the ID teacher's numbers are reported beside the sequence teacher's, on the same task
    assert m["id/recall@10"] == id_res.metrics["id/recall@10"]
    assert m["eval/users"] == 60


def test_exports(trained, teacher_world):
    out, id_res, seq_res = trained
    pos = train_positives(teacher_world)
    for res, sub in ((id_res, "id"), (seq_res, "sequence")):
        d = out / sub
        assert res.out_dir == d
        table = pq.read_table(d / ex.ITEM_EMBEDDINGS)
        assert str(table.schema.field("item_id").type) == "int64"
        assert str(table.schema.field("embedding").type) == "list<element: float>"
        assert str(table.schema.field("model_version").type) == "string"
        items = pd.read_parquet(d / ex.ITEM_EMBEDDINGS)
        np.testing.assert_array_equal(items["item_id"].to_numpy(), np.unique(pos["item_id"]))
        emb = ex.embedding_matrix(items)
        assert emb.shape == (len(items), 64) and emb.dtype == np.float32 and np.isfinite(emb).all()
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
        assert (items["model_version"] == res.model_version).all() and res.model_version.startswith(sub)
        users = pd.read_parquet(d / ex.USER_EMBEDDINGS)
        np.testing.assert_array_equal(users["user_id"].to_numpy(), np.unique(pos["user_id"]))
        vocab = load_vocabs(d / ex.VOCAB)["items"]
        np.testing.assert_array_equal(vocab.ids, items["item_id"].to_numpy())
        lookup = vocab.lookup([items["item_id"].iloc[0], 10**9, -5])
        assert lookup.tolist() == [1, UNKNOWN_INDEX, UNKNOWN_INDEX]
        assert not list(d.glob(".*tmp*"))                       # atomic writes leave no temp files
        assert json.loads((d / ex.METRICS).read_text())[f"{sub}/recall@10"] == res.metrics[f"{sub}/recall@10"]


def _same_embeddings(a, b):
    for col in ("item_embeddings", "user_embeddings"):
        x, y = getattr(a, col), getattr(b, col)
        np.testing.assert_array_equal(x.iloc[:, 0].to_numpy(), y.iloc[:, 0].to_numpy())
        np.testing.assert_array_equal(ex.embedding_matrix(x), ex.embedding_matrix(y))


def test_deterministic_under_seed(teacher_world, teacher_cfg, trained):
    _, id_res, seq_res = trained
    _same_embeddings(id_res, train_id_teacher(teacher_world, teacher_cfg, None))
    _same_embeddings(seq_res, train_sequence_teacher(teacher_world, teacher_cfg, None))
    other = train_id_teacher(teacher_world, teacher_cfg.model_copy(update={"seed": 4}), None)
    assert not np.array_equal(ex.embedding_matrix(other.item_embeddings), ex.embedding_matrix(id_res.item_embeddings))


def test_only_train_split_is_used(teacher_world, teacher_cfg, trained):
    """Valid/test-period events (new users, known and new items, positives) change nothing in the weights."""
    _, id_res, seq_res = trained
    sp = teacher_world.split
    rng = np.random.default_rng(1)
    n = 400
    late = pd.DataFrame({
        "user_id": rng.integers(1, 80, n).astype(np.int64),                    # includes unseen users
        "item_id": rng.choice(teacher_world.items["item_id"].to_numpy(), n),
        "timestamp": sp.train_end + pd.to_timedelta(rng.uniform(0, 5, n), unit="D"),
        "like": np.ones(n, np.float32)})
    inter = pd.concat([teacher_world.interactions, late], ignore_index=True).sort_values("timestamp")
    bigger = build_dataset(name="w", source="t", items=teacher_world.items, interactions=inter,
                           labels={"like": ""}, positive=PositiveRule("like", 1.0), split=sp)
    assert len(bigger.interactions) == len(teacher_world.interactions) + n
    _same_embeddings(id_res, train_id_teacher(bigger, teacher_cfg, None))
    _same_embeddings(seq_res, train_sequence_teacher(bigger, teacher_cfg, None))
    # and the check can fail: a change inside the train period does change the weights
    early = late.assign(timestamp=sp.train_end - pd.Timedelta(days=2))
    inter2 = pd.concat([teacher_world.interactions, early], ignore_index=True).sort_values("timestamp")
    changed = build_dataset(name="w", source="t", items=teacher_world.items, interactions=inter2,
                            labels={"like": ""}, positive=PositiveRule("like", 1.0), split=sp)
    res = train_id_teacher(changed, teacher_cfg, None)
    assert not np.array_equal(ex.embedding_matrix(res.item_embeddings), ex.embedding_matrix(id_res.item_embeddings))


def test_bpr_loss_trains(teacher_world, teacher_cfg):
    res = train_id_teacher(teacher_world, teacher_cfg.model_copy(update={"two_tower": teacher_cfg.two_tower.model_copy(
        update={"loss": "bpr"})}), None)
    assert res.loss_history[-1] < res.loss_history[0]
    assert res.metrics["id/recall@10"] > res.metrics["popularity/recall@10"]


def _job_listen_addresses(proc: subprocess.Popen) -> set[str]:
    """Addresses any process of the job (the launcher and its workers) listens on, polled while the run lasts."""
    seen: set[str] = set()
    launcher = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in [launcher, *launcher.children(recursive=True)]:
                seen |= {c.laddr.ip for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
        time.sleep(0.2)
    return seen


def test_report_holds_every_metric(trained):
    out, id_res, seq_res = trained
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["world_size"] == 1
    for kind, res in (("id", id_res), ("sequence", seq_res)):
        assert report[kind] == {**res.metrics, "model_version": res.model_version}


def test_cli_trains_like_the_library_and_rejects_bad_input(teacher_world, teacher_cfg, trained, tmp_path):
    """`recsys teachers` with the run config's teachers section gives the library's exports."""
    _, id_res, _ = trained
    write_dataset(teacher_world, tmp_path / "ds")
    runner = CliRunner()
    args = ["teachers", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--teacher", "id"]
    res = runner.invoke(app, args + [a for s in OVERRIDES for a in ("--set", s)])
    assert res.exit_code == 0, res.output
    items = pd.read_parquet(tmp_path / "out" / "id" / ex.ITEM_EMBEDDINGS)
    np.testing.assert_array_equal(ex.embedding_matrix(items), ex.embedding_matrix(id_res.item_embeddings))
    library = train_id_teacher(load_dataset(tmp_path / "ds"), teacher_cfg, None)  # the version hashes the files
    assert (items["model_version"] == library.model_version).all()
    assert not (tmp_path / "out" / "sequence").exists()
    assert runner.invoke(app, args + ["--set", "teachers.sasrec.layerz=3"]).exit_code == 2  # names the key
    assert runner.invoke(app, ["teachers", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, args[:-1] + ["all"]).exit_code == 2


def test_two_launched_processes_match_one(teacher_world, trained, tmp_path):
    """`recsys teachers --nproc 2`: the same examples per step as one process, so close metrics and the same
    exports; no process of the job listens beyond loopback (the store, gloo's pair sockets)."""
    _, id_res, seq_res = trained
    ds_dir = tmp_path / "ds"
    write_dataset(teacher_world, ds_dir)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("GLOO_SOCKET_IFNAME", None)
    env.pop("MASTER_ADDR", None)
    cmd = [sys.executable, "-m", "recsys.cli", "teachers", "--nproc", "2", "--dataset", str(ds_dir), "--out", str(out)]
    log = tmp_path / "launch.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd + [a for s in OVERRIDES for a in ("--set", s)], env=env, cwd=REPO,
                                stdout=sink, stderr=subprocess.STDOUT, text=True)
        listening = _job_listen_addresses(proc)
    assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
    assert "127.0.0.1" in listening and listening <= {"127.0.0.1", "::1"}, listening
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["world_size"] == 2
    for kind, one in (("id", id_res), ("sequence", seq_res)):
        two = report[kind]
        assert two["train/world_size"] == 2.0
        key = f"{kind}/recall@10"
        assert abs(two[key] - one.metrics[key]) <= 0.15, (kind, two[key], one.metrics[key])
        assert two[key] > two["popularity/recall@10"] + 0.15
        items = pd.read_parquet(out / kind / ex.ITEM_EMBEDDINGS)
        np.testing.assert_array_equal(items["item_id"].to_numpy(), one.item_embeddings["item_id"].to_numpy())
        assert (items["model_version"] == two["model_version"]).all()


def test_launched_cli_reports_errors(tmp_path):
    """A config error stops `--nproc 2` before any worker starts; a worker's error ends the job with its status
    (2: a user error) and message."""
    runner = CliRunner()
    args = ["teachers", "--nproc", "2", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    res = runner.invoke(app, args + ["--set", "teachers.sasrec.layerz=3"])
    assert res.exit_code == 2 and "layerz" in res.output
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "recsys.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "worker rank" in proc.stdout and "exited with status 2" in proc.stdout
    assert proc.stdout.rstrip().endswith("not a prepared dataset (no manifest.json); run `recsys data prepare` first")


def test_torchrun_still_launches(teacher_world, tmp_path):
    """Smoke check of the torchrun path (env:// rendezvous, for users with a cluster launcher): one short epoch of
    the ID teacher on two ranks."""
    write_dataset(teacher_world, tmp_path / "ds")
    with socket.socket() as s:                      # torchrun's static rendezvous hangs with --master-port 0
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", port, "-m", "recsys.cli", "teachers", "--dataset", str(tmp_path / "ds"), "--out",
           str(tmp_path / "out"), "--teacher", "id", "--set", "teachers.two_tower.epochs=1"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((tmp_path / "out" / REPORT_NAME).read_text())["world_size"] == 2
