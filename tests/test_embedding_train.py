"""Pair builders (train split only), the trainer (resume, determinism) and a small quality bar."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.encoders.types import EncodedItems, TextTokens
from embedding.model import OmniEmbeddingConfig, OmniEmbeddingModel
from embedding.tasks import (PairConfig, build_i2i_pairs, build_label_pairs, build_pair_sets, build_q2i_pairs,
                             dataset_weights, title_keywords)
from embedding.train import EmbeddingTrainConfig, StageConfig, get_lr, train_embedding
from recsys.data.dataset import Dataset, build_dataset
from recsys.data.schema import PositiveRule
from recsys.data.split import TemporalSplit

DT = 16
N_CLUSTERS, PER_CLUSTER = 8, 20
WORDS = ["comet", "river", "falcon", "ember", "glacier", "meadow", "thunder", "velvet", "harbor", "lantern"]


def make_world(seed: int = 0) -> tuple[Dataset, EncodedItems]:
    """Items in clusters; users engage items of one cluster in sequence; item text tokens = cluster centre
    + noise; categories name the cluster."""
    rng = np.random.default_rng(seed)
    n = N_CLUSTERS * PER_CLUSTER
    cluster = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    item_ids = np.arange(1000, 1000 + n, dtype=np.int64)
    items = pd.DataFrame({
        "item_id": item_ids,
        "title": [f"{WORDS[c % len(WORDS)].title()} {WORDS[(i * 7) % len(WORDS)]} {i}" for i, c in
                  enumerate(cluster)],
        "categories": [[f"genre{c}", "common"] for c in cluster],
        "tags": [[f"tag{c}"] if i % 3 == 0 else [] for i, c in enumerate(cluster)],
        "created_at": pd.Timestamp("2023-01-01", tz="UTC"),
    })
    rows = []
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    for u in range(80):
        c = rng.integers(N_CLUSTERS)
        seq = rng.choice(np.flatnonzero(cluster == c), 10, replace=False)
        start = t0 + pd.Timedelta(days=int(rng.integers(0, 60)))
        for k, i in enumerate(seq):
            rows.append((u, item_ids[i], start + pd.Timedelta(hours=k), float(rng.random() < 0.9)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "like"])
    ds = build_dataset(name="toy", source="test", items=items, interactions=inter, labels={"like": "like"},
                       positive=PositiveRule("like", 1.0), split=(0.1, 0.1))
    centres = rng.normal(size=(N_CLUSTERS, DT))
    lt = 6
    tokens = (centres[cluster][:, None, :] + 1.0 * rng.normal(size=(n, lt, DT))).astype(np.float16)
    field = np.zeros((n, lt), np.int8)
    field[:, 3:] = 3
    field[rng.random(n) < 0.3, 4:] = -1
    tokens[field < 0] = 0
    enc = EncodedItems(item_ids=item_ids, text=TextTokens(tokens, field), audio_kind="embedding",
                       pooled_text=np.stack([tokens[i][field[i] >= 0].astype(np.float32).mean(0) for i in range(n)]))
    return ds, enc


def fake_encode_texts(texts: list[str]) -> TextTokens:
    tokens = np.zeros((len(texts), 3, DT), np.float16)
    for i, t in enumerate(texts):
        tokens[i] = np.random.default_rng(zlib.crc32(t.encode())).normal(size=(3, DT))
    return TextTokens(tokens, np.zeros((len(texts), 3), np.int8))


def tiny_cfg(steps: int = 6, **kw) -> EmbeddingTrainConfig:
    model = OmniEmbeddingConfig(hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32, matryoshka_dims=[8, 16],
                                dropout=0.1, field_drop_prob=0.2)
    base = dict(model=model, stages=[StageConfig(steps=steps)], batch_size=16, warmup_steps=2, checkpoint_every=2,
                log_every=2, eval_max_queries=50, num_threads=1, pairs=PairConfig(label_min_items=3))
    return EmbeddingTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def world():
    return make_world()


# ---- pair builders --------------------------------------------------------------------------------------
def test_i2i_pairs_window_dedupe_holdout(world):
    ds, _ = world
    ps = build_i2i_pairs(ds, PairConfig(holdout_fraction=0.2))
    assert ps.symmetric and len(ps.train) > 0 and len(ps.holdout) > 0
    assert (ps.train["query"] < ps.train["target"]).all()  # unordered, canonical
    assert not ps.train.duplicated(["query", "target"]).any()
    held = set(ps.holdout["query"])
    assert not (ps.train["query"].isin(held) | ps.train["target"].isin(held)).any()  # never trained on
    # pairs stay within clusters (users engage one cluster)
    cl = lambda s: (s - 1000) // PER_CLUSTER  # noqa: E731
    assert (cl(ps.train["query"]) == cl(ps.train["target"])).all()
    capped = build_i2i_pairs(ds, PairConfig(i2i_max_pairs_per_item=2, holdout_fraction=0.0))
    counts = pd.concat([capped.train["query"], capped.train["target"]]).value_counts()
    assert counts.max() <= 2


def test_pair_builders_see_train_split_only(world):
    ds, _ = world
    before = build_pair_sets(ds, PairConfig(), ["i2i", "q2i", "label"])
    # cross-cluster positives in valid/test periods
    late = pd.DataFrame({"user_id": 999, "item_id": ds.items["item_id"].to_numpy()[::7],
                         "timestamp": ds.split.train_end + pd.to_timedelta(np.arange(23), unit="min"),
                         "like": np.float32(1.0)})
    late2 = late.assign(timestamp=ds.split.valid_end + pd.to_timedelta(np.arange(23), unit="min"), user_id=998)
    grown = Dataset(ds.manifest, ds.items, pd.concat([ds.interactions, late, late2], ignore_index=True))
    after = build_pair_sets(grown, PairConfig(), ["i2i", "q2i", "label"])
    assert set(before) == set(after) == {"i2i", "q2i", "label"}
    for k in before:
        pd.testing.assert_frame_equal(before[k].train, after[k].train)
        pd.testing.assert_frame_equal(before[k].holdout, after[k].holdout)
    # ... while the same rows inside the train period do change the pairs
    moved = TemporalSplit(ds.split.valid_end + pd.Timedelta(days=1), ds.split.valid_end + pd.Timedelta(days=2))
    grown.manifest = type(ds.manifest).from_dict({**ds.manifest.to_dict(), "split": moved.to_manifest()})
    assert len(build_i2i_pairs(grown).train) + len(build_i2i_pairs(grown).holdout) > \
        len(before["i2i"].train) + len(before["i2i"].holdout)


def test_q2i_from_items_and_labels(world):
    ds, _ = world
    assert title_keywords("The Comet of Doom (1999)") == ["comet", "doom"]
    ps = build_q2i_pairs(ds, PairConfig(holdout_fraction=0.2))
    assert ps.query_kind == "text" and ps.info["source"] == "items"
    allp = pd.concat([ps.train, ps.holdout])
    items = ds.items.set_index("item_id")
    for q, group in allp.groupby("query"):
        if q.startswith("tag"):
            expect = {i for i, t in items["tags"].items() if q in t}
        else:
            g, w = q.split(" ")
            expect = {i for i, r in items.iterrows()
                      if g in [c.lower() for c in r["categories"]] and w in title_keywords(r["title"])}
        assert set(group["target"]) == expect, q
    assert not set(ps.train["query"]) & set(ps.holdout["query"])
    # items created after the train cut-off give no content pairs
    late = ds.items.copy()
    late["created_at"] = ds.split.train_end + pd.Timedelta(days=1)
    none = Dataset(ds.manifest, late, ds.interactions)
    assert build_q2i_pairs(none) is None and build_label_pairs(none) is None
    lab = build_label_pairs(ds, PairConfig(label_min_items=3))
    assert {"category: genre0", "category: common", "tag: tag0"} <= set(lab.train["target"])
    assert lab.query_kind == "item" and lab.target_kind == "text"


def test_queries_table_is_used_when_present(world):
    ds, _ = world
    q = pd.DataFrame({"query_text": ["space film", "space film", "old river"], "item_id": [1000, 1001, 1005]})
    ds2 = Dataset(ds.manifest, ds.items, ds.interactions, queries=q)
    ps = build_q2i_pairs(ds2, PairConfig(holdout_fraction=0.0))
    assert ps.info["source"] == "queries" and len(ps.train) == 3


def test_dataset_weights():
    assert dataset_weights({"a": 100, "b": 25}, "proportional") == {"a": 0.8, "b": 0.2}
    assert dataset_weights({"a": 100, "b": 25}, "sqrt") == pytest.approx({"a": 10 / 15, "b": 5 / 15})
    assert dataset_weights({"a": 100, "b": 25}, "uniform") == {"a": 0.5, "b": 0.5}
    assert dataset_weights({"a": 1, "b": 1}, explicit={"b": 2.0}) == {"b": 1.0}
    with pytest.raises(ValueError, match="unknown"):
        dataset_weights({"a": 1}, explicit={"zzz": 1.0})


def test_lr_schedule():
    cfg = tiny_cfg(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    lrs = [get_lr(s, cfg) for s in range(100)]
    assert lrs[0] < lrs[9] <= 1e-3 and max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


# ---- trainer --------------------------------------------------------------------------------------------
class Interrupt(Exception):
    pass


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return OmniEmbeddingModel.from_pretrained(model_dir).state_dict()


def test_train_resume_equals_uninterrupted(world, tmp_path):
    ds, enc = world
    cfg = tiny_cfg(steps=6)
    full = train_embedding(ds, enc, cfg, tmp_path / "full", "cpu", fake_encode_texts)
    assert full.metrics["train/steps"] == 6 and full.steps_per_sec > 0
    assert {"i2i/recall@10", "baseline/i2i/recall@10", "q2i/recall@10", "label/recall@1",
            "temperature/i2i"} <= set(full.metrics)
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert set(summary["pairs"]) == {"i2i", "q2i", "label"}

    def stop_at_3(step, info):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_embedding(ds, enc, cfg, tmp_path / "cut", "cpu", fake_encode_texts, on_step=stop_at_3)
    state = torch.load(tmp_path / "cut" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 2  # last checkpoint (every 2 steps) before the interruption
    resumed = train_embedding(ds, enc, cfg, tmp_path / "cut", "cpu", fake_encode_texts)
    assert resumed.metrics["train/steps"] == 6
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["train/loss"] == pytest.approx(full.metrics["train/loss"])
    # a finished run resumes to "done" without training again
    again = train_embedding(ds, enc, cfg, tmp_path / "cut", "cpu", fake_encode_texts)
    assert again.metrics["train/steps"] == 6
    # a checkpoint from other settings is refused, naming the key
    with pytest.raises(ValueError, match="batch_size"):
        train_embedding(ds, enc, tiny_cfg(steps=6, batch_size=8), tmp_path / "cut", "cpu", fake_encode_texts)


def test_train_deterministic_under_seed(world, tmp_path):
    ds, enc = world
    r1 = train_embedding(ds, enc, tiny_cfg(steps=3), tmp_path / "a", "cpu")  # i2i only without encode_texts
    r2 = train_embedding(ds, enc, tiny_cfg(steps=3), tmp_path / "b", "cpu")
    r3 = train_embedding(ds, enc, tiny_cfg(steps=3, seed=1), tmp_path / "c", "cpu")
    a, b, c = _weights(r1.model_dir), _weights(r2.model_dir), _weights(r3.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert set(r1.pair_info) == {"i2i"}


def test_stages_and_quality_bar(world, tmp_path):
    """Trained i2i Recall@10 on held-out (cold) items clearly beats random (10 / N)."""
    ds, enc = world
    cfg = tiny_cfg(steps=0 or 1, lr=3e-3, warmup_steps=10, checkpoint_every=1000, batch_size=32,
                   stages=[StageConfig(name="content", steps=60, tasks={"i2i": 1.0, "label": 1.0}),
                           StageConfig(name="i2i", steps=40, tasks={"i2i": 1.0})],
                   pairs=PairConfig(holdout_fraction=0.25, label_min_items=3))
    res = train_embedding(ds, enc, cfg, tmp_path / "q", "cpu", fake_encode_texts)
    random_recall = 10 / len(enc)
    assert res.metrics["train/steps"] == 100
    assert res.metrics["i2i/recall@10"] > 4 * random_recall, res.metrics
