"""TorchRec teachers: learning, quality vs popularity, exports, determinism, train-split only, torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.data.dataset import build_dataset, write_dataset
from recsys.data.schema import PositiveRule
from recsys.teachers import (TeacherConfig, Vocab, evaluate_next_item, load_vocabs, train_id_teacher,
                             train_sequence_teacher)
from recsys.teachers import export as ex
from recsys.teachers.data import UNKNOWN_INDEX, cluster_markov_dataset, teacher_data, train_positives
from recsys.teachers.evaluate import NextItemTask, rank_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a tiny budget; the world (200 items in 10 clusters, 60 users, Markov-ish order) is easy to learn
CFG = TeacherConfig(seed=3, two_tower={"epochs": 10, "batch": 256}, sasrec={"epochs": 12, "max_len": 20})


@pytest.fixture(scope="module")
def world():
    return cluster_markov_dataset(n_items=200, n_clusters=10, n_users=60, events_per_user=40, seed=0)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers")
    id_res = train_id_teacher(world, CFG, out)
    seq_res = train_sequence_teacher(world, CFG, out, id_teacher=id_res)
    return out, id_res, seq_res


def test_loss_falls(trained):
    _, id_res, seq_res = trained
    for res in (id_res, seq_res):
        assert len(res.loss_history) > 1
        assert res.loss_history[-1] < 0.8 * res.loss_history[0], (res.kind, res.loss_history)
        assert res.examples_per_sec > 0


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


def test_exports(trained, world):
    out, id_res, seq_res = trained
    pos = train_positives(world)
    for res, sub in ((id_res, "id"), (seq_res, "sequence")):
        d = out / sub
        assert res.out_dir == d
        table = pq.read_table(d / ex.ITEM_EMBEDDINGS)
        assert str(table.schema.field("item_id").type) == "int64"
        assert str(table.schema.field("embedding").type) == "list<element: float>"
        assert str(table.schema.field("model_version").type) == "string"
        items = ex.read_embeddings(d / ex.ITEM_EMBEDDINGS)
        np.testing.assert_array_equal(items["item_id"].to_numpy(), np.unique(pos["item_id"]))
        emb = ex.embedding_matrix(items)
        assert emb.shape == (len(items), 64) and emb.dtype == np.float32 and np.isfinite(emb).all()
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
        assert (items["model_version"] == res.model_version).all() and res.model_version.startswith(sub)
        users = ex.read_embeddings(d / ex.USER_EMBEDDINGS)
        np.testing.assert_array_equal(users["user_id"].to_numpy(), np.unique(pos["user_id"]))
        vocab = load_vocabs(d / ex.VOCAB)["items"]
        np.testing.assert_array_equal(vocab.ids, items["item_id"].to_numpy())
        lookup = vocab.lookup([items["item_id"].iloc[0], 10**9, -5])
        assert lookup.tolist() == [1, UNKNOWN_INDEX, UNKNOWN_INDEX]
        assert not list(d.glob(".*tmp*"))                       # atomic writes leave no temp files
        assert json.loads((d / ex.METRICS).read_text())[f"{sub}/recall@10"] == res.metrics[f"{sub}/recall@10"]


def test_vocab_unknown_is_zero():
    v = Vocab.from_ids([30, 10, 20, 10])
    assert v.num_embeddings == 4
    assert v.lookup([10, 20, 30, 15, 99, 0]).tolist() == [1, 2, 3, 0, 0, 0]
    assert v.to_ids([1, 3, 0]).tolist() == [10, 30, -1]
    assert Vocab.from_ids([]).lookup([1]).tolist() == [0]


def _same_embeddings(a, b):
    for col in ("item_embeddings", "user_embeddings"):
        x, y = getattr(a, col), getattr(b, col)
        np.testing.assert_array_equal(x.iloc[:, 0].to_numpy(), y.iloc[:, 0].to_numpy())
        np.testing.assert_array_equal(ex.embedding_matrix(x), ex.embedding_matrix(y))


def test_deterministic_under_seed(world, trained):
    _, id_res, seq_res = trained
    _same_embeddings(id_res, train_id_teacher(world, CFG, None))
    _same_embeddings(seq_res, train_sequence_teacher(world, CFG, None))
    other = train_id_teacher(world, CFG.model_copy(update={"seed": 4}), None)
    assert not np.array_equal(ex.embedding_matrix(other.item_embeddings), ex.embedding_matrix(id_res.item_embeddings))


def test_only_train_split_is_used(world, trained):
    """Valid/test-period events (new users, known and new items, positives) change nothing in the weights."""
    _, id_res, seq_res = trained
    sp = world.split
    rng = np.random.default_rng(1)
    n = 400
    late = pd.DataFrame({
        "user_id": rng.integers(1, 80, n).astype(np.int64),                    # includes unseen users
        "item_id": rng.choice(world.items["item_id"].to_numpy(), n),
        "timestamp": sp.train_end + pd.to_timedelta(rng.uniform(0, 5, n), unit="D"),
        "like": np.ones(n, np.float32)})
    inter = pd.concat([world.interactions, late], ignore_index=True).sort_values("timestamp")
    bigger = build_dataset(name="w", source="t", items=world.items, interactions=inter,
                           labels={"like": ""}, positive=PositiveRule("like", 1.0), split=sp)
    assert len(bigger.interactions) == len(world.interactions) + n
    _same_embeddings(id_res, train_id_teacher(bigger, CFG, None))
    _same_embeddings(seq_res, train_sequence_teacher(bigger, CFG, None))
    # and the check can fail: a change inside the train period does change the weights
    early = late.assign(timestamp=sp.train_end - pd.Timedelta(days=2))
    inter2 = pd.concat([world.interactions, early], ignore_index=True).sort_values("timestamp")
    changed = build_dataset(name="w", source="t", items=world.items, interactions=inter2,
                            labels={"like": ""}, positive=PositiveRule("like", 1.0), split=sp)
    res = train_id_teacher(changed, CFG, None)
    assert not np.array_equal(ex.embedding_matrix(res.item_embeddings), ex.embedding_matrix(id_res.item_embeddings))


def test_holdout_excludes_targets(world):
    data = teacher_data(world, holdout_last=True)
    assert len(data.fit) == len(data.positives) - len(data.targets)
    fit_keys = set(map(tuple, data.fit[["user_id", "item_id", "timestamp"]].astype(str).to_numpy()))
    last = data.targets[["user_id", "item_id", "timestamp"]].astype(str).to_numpy()
    assert not any(tuple(r) in fit_keys for r in last)
    assert (data.positives["timestamp"] < world.split.train_end).all()


def test_rank_metrics_by_hand():
    task = NextItemTask(user_ids=np.array([1, 2, 3]), targets=np.array([30, 10, 99]),
                        history=[np.array([10]), np.array([30]), np.array([], dtype=np.int64)],
                        items=Vocab.from_ids([10, 20, 30]), popularity=np.array([3.0, 2.0, 1.0]))
    scores = np.array([[9.0, 1.0, 2.0],     # 10 masked as history -> target 30 ranks 0 (scores 1, 2)
                       [1.0, 5.0, 9.0],     # 30 masked -> target 10 ranks 1 (20 scores higher)
                       [1.0, 2.0, 3.0]])    # unknown target: miss
    m = rank_metrics(scores, task, ks=(1, 2), exclude_history=True, name="m")
    assert m["m/recall@1"] == pytest.approx(1 / 3) and m["m/recall@2"] == pytest.approx(2 / 3)
    assert m["m/ndcg@2"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    m2 = rank_metrics(scores, task, ks=(1,), exclude_history=False, name="m")
    assert m2["m/recall@1"] == 0.0            # without masking, user 1's history item 10 wins
    # dot-product evaluator; item 20 is missing from the export, so it scores -inf and its user misses
    task.targets = np.array([30, 10, 20])
    e = evaluate_next_item(np.eye(3)[[2, 0, 1]], np.array([10, 30]), np.eye(3)[[0, 2]], task, ks=(1,), name="e")
    assert e["e/recall@1"] == pytest.approx(2 / 3)
    e = evaluate_next_item(np.eye(3)[[2, 0, 1]], np.array([10, 20, 30]), np.eye(3), task, ks=(1,), name="e")
    assert e["e/recall@1"] == pytest.approx(1.0)


def test_config_rejects_unknown_keys():
    from recsys.config_io import ConfigError, load_model
    with pytest.raises(ConfigError, match="sasrec.layerz"):
        load_model(TeacherConfig, None, ["sasrec.layerz=3"])
    with pytest.raises(ConfigError, match="two_tower.loss"):
        load_model(TeacherConfig, None, ["two_tower.loss=hinge"])


def test_bpr_loss_trains(world):
    res = train_id_teacher(world, CFG.model_copy(update={"two_tower": CFG.two_tower.model_copy(
        update={"loss": "bpr"})}), None)
    assert res.loss_history[-1] < res.loss_history[0]
    assert res.metrics["id/recall@10"] > res.metrics["popularity/recall@10"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_one(world, trained, tmp_path):
    _, id_res, seq_res = trained
    ds_dir = tmp_path / "ds"
    write_dataset(world, ds_dir)
    out = tmp_path / "out"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sets = ["seed=3", "two_tower.epochs=10", "two_tower.batch=256", "sasrec.epochs=12", "sasrec.max_len=20"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", env["MASTER_PORT"], "-m", "recsys.teachers", "--dataset", str(ds_dir),
           "--out", str(out), "--teacher", "both"] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "teachers_report.json").read_text())
    assert report["world_size"] == 2
    for kind, one in (("id", id_res), ("sequence", seq_res)):
        two = report[kind]
        assert two["train/world_size"] == 2.0
        key = f"{kind}/recall@10"
        assert abs(two[key] - one.metrics[key]) <= 0.15, (kind, two[key], one.metrics[key])
        assert two[key] > two["popularity/recall@10"] + 0.15
        items = ex.read_embeddings(out / kind / ex.ITEM_EMBEDDINGS)
        np.testing.assert_array_equal(items["item_id"].to_numpy(), one.item_embeddings["item_id"].to_numpy())
        assert (items["model_version"] == two["model_version"]).all()
