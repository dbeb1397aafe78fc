"""The CRE run: quality over the content model, what learns, cold start, exact resume, determinism, TorchRec."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from embedding.cre import load_heads, project, run_cre
from embedding.cre.evaluate import ItemSpace
from embedding.encoders.types import EncodedItems, TextTokens
from embedding.infer import embed_items
from embedding.model import OmniEmbeddingModel
from embedding.teachers import TeacherConfig, train_id_teacher
from embedding.teachers.data import cluster_markov_dataset
from recsys.checkpoint import STATE_NAME


def _weights(d) -> dict[str, torch.Tensor]:
    return OmniEmbeddingModel.from_pretrained(d).state_dict()


@pytest.fixture(scope="module")
def trained(cre_world, base_dir, tiny_cre, tmp_path_factory):
    out = tmp_path_factory.mktemp("cre")
    res = run_cre(cre_world.ds, cre_world.enc, base_dir, {"fake": cre_world.teacher},
                  tiny_cre(seq2item_steps=60, id2item_steps=60), out, "cpu")
    return res, out


def test_cre_raises_collaborative_metrics(trained, cre_world):
    """Communities drive engagement but barely show in content: CRE must lift the behaviour metrics clearly
    over the content-only model (and, here where community and category are independent, give up content)."""
    res, _ = trained
    m = res.metrics
    gains = {"seq2item_vanilla/recall@10": 0.2, "seq2item_filtered/recall@10": 0.15, "seq2item_vanilla/recall@25": 0.2,
             "i2i/recall@50": 0.2, "teacher_fake/top10_overlap": 0.05, "teacher_fake/kendall_tau": 0.1}
    for key, gain in gains.items():
        assert m[key] > m[f"before/{key}"] + gain, (key, m[key], m[f"before/{key}"])
    assert m["category_i2i/precision@10"] < m["before/category_i2i/precision@10"]  # the trade-off
    assert 0 <= m["align_fake/bijective"] <= 1 and "before/align_fake/bijective" not in m  # no head before CRE
    assert {"seq2item_vanilla/recall@1", "i2i/recall@10", "category_i2i/recall@10", "category_i2i/recall@50",
            "nmi/category", "probe_fake/bijective", "before/probe_fake/bijective", "cold/items"} <= set(m)
    assert m["cold/items"] == cre_world.n_cold and m["train/steps"] == 120
    assert res.info["sequences"]["vanilla"]["sequences"] > 0
    assert res.info["distill_items"] == cre_world.n_comm * cre_world.per_comm


def test_frozen_fusion_trains_only_the_item_memory(trained, base_dir):
    """Default (finetune_fusion=false): every base weight is unchanged, the added memory is not zero, and the
    heads are linear maps onto the teacher."""
    res, _ = trained
    base, after = _weights(base_dir), _weights(res.model_dir)
    assert set(after) - set(base) and all(k.startswith("memory.") for k in set(after) - set(base))
    assert all(torch.equal(base[k], after[k]) for k in base)
    assert after["memory.net.2.weight"].abs().sum() > 0
    heads = load_heads(res.heads_path)
    assert [type(m) for m in heads["fake"].net] == [nn.Linear]


def test_steps_follow_the_per_stage_schedule(trained, tiny_cre):
    """Each stage warms up, then decays by cosine towards min_lr (by hand: lr 3e-3, min_lr 5e-5, warmup 3 of 60)."""
    _, out = trained
    history = torch.load(out / "checkpoint" / STATE_NAME, weights_only=True)["history"]
    cfg = tiny_cre()
    floor = cfg.min_lr / cfg.lr
    by_hand = [(k + 1) / 4 if k < 3 else floor + 0.5 * (1 + math.cos(math.pi * (k - 3) / 57)) * (1 - floor)
               for k in range(60)]
    assert [h["stage"] for h in history] == ["seq2item"] * 60 + ["id2item"] * 60
    assert [h["lr"] for h in history] == pytest.approx([cfg.lr * f for f in by_hand * 2], rel=1e-12)


def test_teacher_filtered_sequences(cre_world, base_dir, tiny_cre, tmp_path):
    res = run_cre(cre_world.ds, cre_world.enc, base_dir, {"fake": cre_world.teacher},
                  tiny_cre(seq2item_steps=2, id2item_steps=2, filter_by="fake"), tmp_path / "t", "cpu")
    assert res.info["sequences"]["filtered"]["sequences"] > 0
    with pytest.raises(ValueError, match="filter_by='nope'"):
        run_cre(cre_world.ds, cre_world.enc, base_dir, {"fake": cre_world.teacher},
                tiny_cre(seq2item_steps=2, id2item_steps=2, filter_by="nope"), tmp_path / "n", "cpu")


def test_cold_start_items_embedded_from_content(cre_world, trained):
    enc, teacher, community = cre_world.enc, cre_world.teacher, cre_world.community
    res, _ = trained
    model = OmniEmbeddingModel.from_pretrained(res.model_dir)  # a plain omni model: heads live beside it
    assert not any(k.startswith("heads") for k in model.state_dict())
    cold = np.flatnonzero(community < 0)
    assert not np.isin(enc.item_ids[cold], teacher["item_id"]).any()
    emb = embed_items(model, enc, device="cpu", rows=cold)
    assert emb.shape == (cre_world.n_cold, 32) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    heads = load_heads(res.heads_path)
    proj = project(heads, emb)["fake"]
    assert proj.shape == (cre_world.n_cold, cre_world.teacher_dim) and np.isfinite(proj).all()
    # the saved model + heads give the space CRE evaluated ("align_fake" is measured through these heads)
    vectors = embed_items(model, enc, device="cpu")
    space = ItemSpace(enc.item_ids, vectors, project(heads, vectors))
    assert set(space.projected) == {"fake"} and np.allclose(space.vectors[cold], emb, atol=1e-5)


@pytest.mark.parametrize("finetune_fusion", [False, True], ids=["frozen_fusion", "finetune_fusion"])
def test_resume_equals_uninterrupted_and_rerun_is_noop(cre_world, base_dir, tiny_cre, tmp_path, finetune_fusion):
    ds, enc, teacher = cre_world.ds, cre_world.enc, cre_world.teacher
    cfg = tiny_cre(seq2item_steps=4, id2item_steps=4, checkpoint_every=2, finetune_fusion=finetune_fusion)
    full = run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "full", "cpu")

    class Interrupt(Exception):
        pass

    def stop_at_5(step, info):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "cut", "cpu", on_step=stop_at_5)
    state = torch.load(tmp_path / "cut" / "checkpoint" / STATE_NAME, weights_only=True)  # plain containers only
    assert state["step"] == 4 and (state["bank"] is not None) == finetune_fusion  # the bank: fine-tuning only
    resumed = run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "cut", "cpu")
    assert resumed.info["steps_this_run"] == 4
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = load_heads(full.heads_path).state_dict(), load_heads(resumed.heads_path).state_dict()
    assert all(torch.equal(ha[k], hb[k]) for k in ha)
    assert resumed.metrics == full.metrics
    calls = []
    again = run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "cut", "cpu",
                    on_step=lambda s, i: calls.append(s))
    assert not calls and again.metrics == resumed.metrics
    # a checkpoint from other settings is refused, naming the key
    (tmp_path / "cut" / "cre_summary.json").unlink()
    with pytest.raises(ValueError, match="batch_size"):
        run_cre(ds, enc, base_dir, {"fake": teacher}, cfg.model_copy(update={"batch_size": 8}), tmp_path / "cut",
                "cpu")


def test_deterministic_under_seed_and_leaves_global_rng_alone(cre_world, base_dir, tiny_cre, tmp_path):
    ds, enc, teacher = cre_world.ds, cre_world.enc, cre_world.teacher
    cfg = tiny_cre(seq2item_steps=3, id2item_steps=3)
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    before = (random.random(), np.random.random(), torch.rand(1))
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    runs = [run_cre(ds, enc, base_dir, {"fake": teacher}, c, tmp_path / str(i), "cpu")
            for i, c in enumerate([cfg, cfg, cfg.model_copy(update={"seed": 1})])]
    after = (random.random(), np.random.random(), torch.rand(1))  # the caller's streams go on unchanged
    assert after[:2] == before[:2] and torch.equal(after[2], before[2])
    a, b, c = (_weights(r.model_dir) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert runs[0].metrics == runs[1].metrics


# ---- with a real TorchRec teacher -------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_with_torchrec_id_teacher(cre_world, tiny_model_cfg, tiny_cre, tmp_path):
    ds = cluster_markov_dataset(n_items=120, n_clusters=6, n_users=40, events_per_user=30, seed=0)
    n, lt, dt = len(ds.items), cre_world.tokens, cre_world.text_dim
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(n, lt, dt)).astype(np.float16)
    enc = EncodedItems(item_ids=ds.items["item_id"].to_numpy(np.int64),
                       text=TextTokens(tokens, np.full((n, lt), 0, np.int8)), audio_kind="embedding",
                       pooled_text=tokens.astype(np.float32).mean(1))
    teacher = train_id_teacher(ds, TeacherConfig(seed=0, two_tower={"epochs": 3, "batch": 256}), tmp_path / "t")
    torch.manual_seed(0)
    OmniEmbeddingModel(tiny_model_cfg).save_pretrained(tmp_path / "base")
    res = run_cre(ds, enc, tmp_path / "base", {"id": teacher.item_embeddings},
                  tiny_cre(seq2item_steps=10, id2item_steps=10), tmp_path / "cre", "cpu")
    assert res.metrics["train/steps"] == 20 and np.isfinite(res.metrics["align_id/bijective"])
    assert OmniEmbeddingModel.from_pretrained(res.model_dir).config.embed_dim == 32
