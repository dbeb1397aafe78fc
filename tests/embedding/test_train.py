"""The content trainer: exact resume, the lr schedule it follows, determinism, stages and a small quality bar."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from embedding.model import OmniEmbeddingModel
from embedding.model_config import OmniEmbeddingConfig
from embedding.tasks import PairConfig
from embedding.train import EmbeddingTrainConfig, StageConfig, train_embedding
from recsys.checkpoint import STATE_NAME
from recsys.data.dataset import Dataset
from recsys.runtime import native_bf16


def tiny_cfg(steps: int = 6, **kw) -> EmbeddingTrainConfig:
    model = OmniEmbeddingConfig(hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32, matryoshka_dims=[8, 16],
                                dropout=0.1, field_drop_prob=0.2)
    base = dict(model=model, stages=[StageConfig(steps=steps)], batch_size=16, warmup_steps=2, checkpoint_every=2,
                log_every=2, eval_max_queries=50, num_threads=1, pairs=PairConfig(label_min_items=3))
    return EmbeddingTrainConfig(**{**base, **kw})


class Interrupt(Exception):
    pass


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return OmniEmbeddingModel.from_pretrained(model_dir).state_dict()


def _state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint" / STATE_NAME, weights_only=True)  # plain containers only


def test_config_validation():
    with pytest.raises(ValueError, match="min_lr"):
        EmbeddingTrainConfig(lr=1e-4, min_lr=1e-3)
    assert tiny_cfg(steps=5, stages=[StageConfig(steps=5), StageConfig(steps=7)]).total_steps == 12
    recipe = EmbeddingTrainConfig(stages="progressive")              # SAIL's recipe is one switch away
    assert [st.name for st in recipe.stages] == ["broad", "aligned", "hard_negatives"]
    assert recipe.total_steps == EmbeddingTrainConfig().total_steps   # the same steps as the single default stage
    assert [st.name for st in recipe.model_copy(update={"progressive": False}).run_stages] == ["all_in_one"]
    with pytest.raises(ValueError, match="unknown preset"):
        EmbeddingTrainConfig(stages="fancy")


def test_train_resume_equals_uninterrupted(pair_world, tmp_path):
    ds, enc, texts = pair_world.ds, pair_world.enc, pair_world.encode_texts
    cfg = tiny_cfg(steps=6)
    full = train_embedding(ds, enc, cfg, tmp_path / "full", "cpu", texts)
    assert full.metrics["train/steps"] == 6
    assert {"i2i/recall@10", "baseline/i2i/recall@10", "q2i/recall@10", "label/recall@1",
            "temperature/i2i"} <= set(full.metrics)
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert set(summary["pairs"]) == {"i2i", "q2i", "label"}
    # the steps' learning rates are the warmup + cosine values (lr 1e-3, min_lr 1e-4, warmup 2 of 6 steps)
    lrs = [h["lr"] for h in _state(tmp_path / "full")["history"]]
    cosine = [1e-4 + 0.5 * (1 + math.cos(math.pi * k / 4)) * 9e-4 for k in range(4)]
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, *cosine], rel=1e-12)

    def stop_at_3(step, info):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_embedding(ds, enc, cfg, tmp_path / "cut", "cpu", texts, on_step=stop_at_3)
    assert _state(tmp_path / "cut")["step"] == 2  # last checkpoint (every 2 steps) before the interruption
    resumed = train_embedding(ds, enc, cfg, tmp_path / "cut", "cpu", texts)
    assert resumed.metrics["train/steps"] == 6
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["train/loss"] == pytest.approx(full.metrics["train/loss"])
    # a finished run resumes to "done" without training again
    calls = []
    again = train_embedding(ds, enc, cfg, tmp_path / "cut", "cpu", texts, on_step=lambda s, i: calls.append(s))
    assert again.metrics["train/steps"] == 6 and not calls
    # a checkpoint from other settings, or from other inputs, is refused, naming what differs
    with pytest.raises(ValueError, match="batch_size"):
        train_embedding(ds, enc, tiny_cfg(steps=6, batch_size=8), tmp_path / "cut", "cpu", texts)
    with pytest.raises(ValueError, match="precision"):  # trained in the other precision
        other = "fp32" if cfg.precision != "fp32" and native_bf16(torch.device("cpu")) else "bf16"
        train_embedding(ds, enc, tiny_cfg(steps=6, precision=other), tmp_path / "cut", "cpu", texts)
    fewer = Dataset(ds.manifest, ds.items, ds.interactions.iloc[40:])  # other interactions: other pairs
    with pytest.raises(ValueError, match="fingerprint"):
        train_embedding(fewer, enc, cfg, tmp_path / "cut", "cpu", texts)


def test_train_deterministic_under_seed_and_leaves_global_rng_alone(pair_world, tmp_path):
    ds, enc = pair_world.ds, pair_world.enc
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    r1 = train_embedding(ds, enc, tiny_cfg(steps=3), tmp_path / "a", "cpu")  # i2i only without encode_texts
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and torch.equal(before[2], after[2])
    r2 = train_embedding(ds, enc, tiny_cfg(steps=3), tmp_path / "b", "cpu")
    r3 = train_embedding(ds, enc, tiny_cfg(steps=3, seed=1), tmp_path / "c", "cpu")
    a, b, c = _weights(r1.model_dir), _weights(r2.model_dir), _weights(r3.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert set(r1.pair_info) == {"i2i"}


def test_stages_and_quality_bar(pair_world, tmp_path):
    """Trained i2i Recall@10 on held-out (cold) items clearly beats random (10 / N)."""
    ds, enc = pair_world.ds, pair_world.enc
    cfg = tiny_cfg(steps=1, lr=3e-3, warmup_steps=10, checkpoint_every=1000, batch_size=32,
                   stages=[StageConfig(name="content", steps=60, tasks={"i2i": 1.0, "label": 1.0}),
                           StageConfig(name="i2i", steps=40, tasks={"i2i": 1.0})],
                   pairs=PairConfig(holdout_fraction=0.25, label_min_items=3))
    res = train_embedding(ds, enc, cfg, tmp_path / "q", "cpu", pair_world.encode_texts)
    random_recall = 10 / len(enc)
    assert res.metrics["train/steps"] == 100
    assert res.metrics["i2i/recall@10"] > 4 * random_recall, res.metrics


def test_untrained_pair_sets_are_still_evaluated_with_per_query_values(pair_world, tmp_path):
    """Training on i2i alone still scores the label pairs (an ablated dataset stays measured); the per-query table
    reproduces the summary metrics, and the paired interval against the text-only baseline brackets its mean."""
    import pandas as pd

    from embedding.evaluate import BASELINE_QUERIES, RETRIEVAL_QUERIES
    res = train_embedding(pair_world.ds, pair_world.enc, tiny_cfg(steps=4, tasks=["i2i"]), tmp_path / "e", "cpu",
                          pair_world.encode_texts)
    assert set(res.pair_info) == {"i2i"}                         # trained on i2i only
    assert "label/recall@1" in res.metrics and "baseline/label/recall@1" in res.metrics
    queries = pd.read_parquet(tmp_path / "e" / RETRIEVAL_QUERIES)
    assert set(queries["evaluator"]) == {"i2i", "q2i", "label"}
    for (ev, metric), g in queries.groupby(["evaluator", "metric"]):
        assert g["value"].mean() == pytest.approx(res.metrics[f"{ev}/{metric}"])
        assert len(g) == res.metrics[f"{ev}/n_queries"]
        d = res.metrics[f"vs_baseline/{ev}/{metric}"]
        assert d == pytest.approx(res.metrics[f"{ev}/{metric}"] - res.metrics[f"baseline/{ev}/{metric}"])
        assert res.metrics[f"vs_baseline/{ev}/{metric}_lo"] <= d <= res.metrics[f"vs_baseline/{ev}/{metric}_hi"]
    baseline = pd.read_parquet(tmp_path / "e" / BASELINE_QUERIES)
    assert baseline[["evaluator", "query", "metric"]].equals(queries[["evaluator", "query", "metric"]])
    for (ev, metric), g in baseline.groupby(["evaluator", "metric"]):
        assert g["value"].mean() == pytest.approx(res.metrics[f"baseline/{ev}/{metric}"])
    with pytest.raises(ValueError, match="unknown"):
        tiny_cfg(tasks=["i2i", "nope"])


def _recipe_cfg(**kw) -> EmbeddingTrainConfig:
    stages = [StageConfig(name="broad", steps=4), StageConfig(name="aligned", steps=4, balanced=True),
              StageConfig(name="hard", steps=4, balanced=True, hard_negatives=2)]
    return tiny_cfg(stages=stages, **kw)


def test_progressive_stages_run_in_order_and_resume_exactly(pair_world, tmp_path):
    """broad -> balanced -> hard negatives: each stage's inputs are computed at its start (in order), saved in the
    checkpoint, and a run interrupted inside the hard-negative stage resumes to the uninterrupted weights."""
    ds, enc, texts = pair_world.ds, pair_world.enc, pair_world.encode_texts
    seen = []
    full = train_embedding(ds, enc, _recipe_cfg(), tmp_path / "full", "cpu", texts,
                           on_step=lambda s, i: seen.append((s, i["dataset"])))
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    balance = summary["recipe"]["balance"]
    assert set(balance["dataset"]) == set(full.pair_info) and sum(balance["weight"]) == pytest.approx(1.0)
    assert summary["dataset_weights"][1] == pytest.approx(dict(zip(balance["dataset"], balance["weight"])))
    mined = summary["recipe"]["mining"]["hard"]
    assert set(mined) == set(full.pair_info)                          # mined for every dataset of the stage
    for name, info in mined.items():
        assert info["k"] == 2 and info["found"] > 0 and 0 < info["f1"] <= 1, (name, info)
        assert full.metrics[f"mining/hard/{name}/lambda"] == pytest.approx(info["lambda"])
    assert [s for s, _ in seen] == list(range(1, 13))

    def stop_at_11(step, info):
        if step == 11:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_embedding(ds, enc, _recipe_cfg(), tmp_path / "cut", "cpu", texts, on_step=stop_at_11)
    assert _state(tmp_path / "cut")["step"] == 10 and _state(tmp_path / "cut")["recipe"]["mined_stage"] == 2
    resumed = train_embedding(ds, enc, _recipe_cfg(), tmp_path / "cut", "cpu", texts)
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # all-in-one is one switch away: one stage of the same total steps, no balancing, no mining
    flat = train_embedding(ds, enc, _recipe_cfg(progressive=False), tmp_path / "flat", "cpu", texts)
    flat_summary = json.loads((tmp_path / "flat" / "train_summary.json").read_text())
    assert [s["name"] for s in flat_summary["recipe"]["stages"]] == ["all_in_one"]
    assert flat.metrics["train/steps"] == 12 and not flat_summary["recipe"]["mining"]


def test_missing_modalities_are_measured(pair_world, tmp_path):
    """eval_missing_modalities scores the model with each modality missing for every item, paired with the full
    input on the same queries."""
    enc = pair_world.enc
    res = train_embedding(pair_world.ds, enc, tiny_cfg(steps=2, eval_missing_modalities=True), tmp_path / "m",
                          "cpu", pair_world.encode_texts)
    assert enc.modalities() == ["text"]
    d = res.metrics["without_text_vs_full/i2i/recall@10"]
    assert d == pytest.approx(res.metrics["without_text/i2i/recall@10"] - res.metrics["i2i/recall@10"])
    assert d < 0                                                       # text is all these items have


def test_modality_dropout_removes_inputs_as_missing_but_never_all(enc, tiny_config):
    from embedding.batches import collate

    assert enc.modalities() == ["text", "image", "audio"] + [f"vec_{k}" for k in sorted(enc.precomputed)]
    no_image = enc.without("image")
    assert not no_image.image_mask.any() and "image" not in no_image.modalities()
    with pytest.raises(ValueError, match="no item has"):
        no_image.without("image")
    model = OmniEmbeddingModel(tiny_config(enc, modality_drop_prob=0.9))
    batch = collate(enc.without("text"), np.arange(len(enc)))         # only non-text modalities left
    torch.manual_seed(0)
    dropped = model._drop_modalities(batch)

    def has(b):
        return torch.stack([b["image_mask"].any(1), b["audio_mask"].any(1)]
                           + [~torch.isnan(b[k]).any(1) for k in sorted(b) if k.startswith("pre_")])

    assert torch.equal(has(dropped).any(0), has(batch).any(0))        # nobody loses every modality
    assert (has(dropped).sum(0) < has(batch).sum(0)).any()            # but some lose one
    assert not (has(dropped) & ~has(batch)).any()                      # nothing appears


def test_graded_pairs_train_with_cosent_and_are_scored_by_spearman(pair_world, tmp_path):
    """A rating-like positive column gives graded pairs; training on them (CoSENT) runs beside the contrastive
    sets, and the held-out graded pairs are scored by the Spearman correlation of cosine and score."""
    from embedding.tasks import build_graded_pairs

    ds = pair_world.ds
    rated = Dataset(ds.manifest, ds.items, ds.interactions.assign(
        like=np.random.default_rng(0).integers(1, 6, len(ds.interactions)).astype(float)))
    ps = build_graded_pairs(rated, PairConfig(graded_min_users=1))
    assert ps is not None and ps.graded and ps.symmetric
    assert ps.train["score"].between(0, 1).all() and len(ps.holdout)
    train_items = set(ps.train["query"]) | set(ps.train["target"])
    cold = ~ps.holdout["query"].isin(train_items) | ~ps.holdout["target"].isin(train_items)
    assert cold.all()                                  # every held-out pair touches an item in no training pair
    res = train_embedding(rated, pair_world.enc, tiny_cfg(steps=8, tasks=["i2i", "graded"],
                                                          pairs=PairConfig(graded_min_users=1, label_min_items=3)),
                          tmp_path / "g", "cpu", pair_world.encode_texts)
    assert "graded" in res.pair_info
    assert -1 <= res.metrics["graded/spearman"] <= 1 and "baseline/graded/spearman" in res.metrics
    constant = Dataset(ds.manifest, ds.items, ds.interactions.assign(like=1.0))
    assert build_graded_pairs(constant) is None                       # one value: nothing to grade
