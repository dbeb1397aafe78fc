"""The omni-modal embedding model and its config: shapes, masks, initialisation, optimizer groups, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedding.batches import collate, collate_texts
from embedding.encoders.audio import ConvAudioEncoder
from embedding.encoders.types import TEXT_FIELDS
from embedding.infer import embed_items, embed_texts, pool_text_tokens
from embedding.model import OmniEmbeddingModel
from embedding.model_config import OmniEmbeddingConfig
from recsys.errors import DataError


# ---- config ---------------------------------------------------------------------------------------------
def test_config_from_inputs_and_validation(enc, tiny_config):
    cfg = tiny_config(enc)
    dims = (enc.text.tokens.shape[-1], enc.image.shape[-1], "embedding", enc.audio.shape[-1])
    assert (cfg.text_dim, cfg.image_dim, cfg.audio_kind, cfg.audio_dim) == dims
    assert cfg.precomputed == {"clip": 5} and cfg.all_dims == [8, 16, 32]
    with pytest.raises(ValueError, match="matryoshka_dims"):
        OmniEmbeddingConfig(embed_dim=64, matryoshka_dims=[64])
    with pytest.raises(ValueError, match="heads"):
        OmniEmbeddingConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="hiddne"):
        OmniEmbeddingConfig(hiddne=3)
    d = OmniEmbeddingConfig()
    assert (d.hidden, d.heads, d.n_latents, d.embed_dim, d.matryoshka_dims) == (128, 4, 16, 256, [64, 128])


# ---- shapes and masks -----------------------------------------------------------------------------------
def test_forward_shapes_and_normalised_prefixes(model, enc):
    batch = collate(enc, np.arange(len(enc)), "cpu")
    out = model(batch, role="target", task="i2i")
    assert out.embedding.shape == (len(enc), 32)
    assert torch.allclose(out.embedding.norm(dim=-1), torch.ones(len(enc)), atol=1e-5)
    for d in (8, 16, 32):
        p = out.truncate(d)
        assert p.shape == (len(enc), d) and torch.allclose(p.norm(dim=-1), torch.ones(len(enc)), atol=1e-5)
    # [task, audio, Nq visual, text..., precomputed]
    T = 1 + 1 + 4 + batch["text_tokens"].shape[1] + 1
    assert out.token_mask.shape == (len(enc), T)


def test_absent_modalities_contribute_no_tokens(model, enc):
    batch = collate(enc, np.arange(len(enc)), "cpu")
    out = model(batch)
    m = out.token_mask
    has_audio = torch.as_tensor(enc.audio_mask.any(1))
    has_img = torch.as_tensor(enc.image_mask.any(1))
    has_pre = torch.as_tensor(~np.isnan(enc.precomputed["clip"]).any(1))
    assert m[:, 0].all()  # task token
    assert torch.equal(m[:, 1], has_audio)
    assert torch.equal(m[:, 2:6], has_img[:, None].expand(-1, 4))
    assert torch.equal(m[:, 6:-1], torch.as_tensor(enc.text.field[:, :m.shape[1] - 7] >= 0))
    assert torch.equal(m[:, -1], has_pre)
    # an item's embedding does not depend on what its absent modalities hold
    i = int(np.flatnonzero(~enc.image_mask.any(1))[0])
    b2 = {k: v.clone() for k, v in batch.items()}
    b2["image"][i] = torch.randn_like(b2["image"][i]) * 5
    assert torch.allclose(model(b2).embedding[i], out.embedding[i], atol=1e-5)


def test_text_only_and_image_only_items(model, make_encoded):
    text_only = make_encoded(4, seed=1, image=False, audio=False, pre=False)
    cfg_model = model  # configured with image/audio/precomputed, but batches may lack them
    out = cfg_model(collate(text_only, np.arange(4), "cpu"))
    assert torch.isfinite(out.embedding).all()
    image_only = make_encoded(4, seed=2, audio=False, pre=False)
    image_only.image_mask[:] = True
    image_only.text.field[:] = -1
    image_only.text.tokens[:] = 0
    out = model(collate(image_only, np.arange(4), "cpu"))
    assert torch.isfinite(out.embedding).all()
    assert out.token_mask.sum(1).tolist() == [1 + 4] * 4  # task + visual tokens only
    # texts (queries) alone, query role
    q = model(collate_texts(text_only.text, np.arange(4), "cpu"), role="query", task="q2i")
    assert q.embedding.shape == (4, 32)


def test_roles_and_tasks_differ(model, enc):
    batch = collate(enc, np.arange(4), "cpu")
    a = model(batch, role="query", task="i2i").embedding
    b = model(batch, role="target", task="i2i").embedding
    c = model(batch, role="query", task="q2i").embedding
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    with pytest.raises(ValueError, match="unknown task"):
        model(batch, task="nope")


def test_untrained_model_is_text_baseline(enc, make_encoded, tiny_config):
    """Residual text path + zero-initialised fusion projection: before training, every role and task ranks
    exactly like the text-only baseline (mean-pooled text tokens, cosine), whatever other modalities hold."""
    torch.manual_seed(0)
    m = OmniEmbeddingModel(tiny_config(enc)).eval()  # embed_dim 32 >= text_dim 16: orthogonal S is an isometry
    queries = make_encoded(7, seed=5, image=False, audio=False, pre=False).text
    items = embed_items(m, enc, device="cpu")  # target role, with image / audio / precomputed inputs
    q = embed_texts(m, queries, device="cpu", role="query", task="q2i")
    base_items = F.normalize(torch.as_tensor(enc.pooled_text), dim=-1).numpy()
    base_q = F.normalize(torch.as_tensor(pool_text_tokens(queries)), dim=-1).numpy()
    np.testing.assert_allclose(q @ items.T, base_q @ base_items.T, atol=1e-5)
    np.testing.assert_array_equal(np.argsort(-(q @ items.T), 1), np.argsort(-(base_q @ base_items.T), 1))
    np.testing.assert_allclose(items @ items.T, base_items @ base_items.T, atol=1e-5)  # i2i too
    # ... and training moves away from it: a non-zero fusion projection changes the scores
    torch.nn.init.normal_(m.head.weight, std=0.5)
    assert not np.allclose(embed_items(m, enc, device="cpu") @ items.T, items @ items.T, atol=1e-3)


def test_image_residual_only_for_items_without_text(enc, make_encoded, tiny_config):
    torch.manual_seed(0)
    m = OmniEmbeddingModel(tiny_config(enc)).eval()
    image_only = make_encoded(4, seed=2, audio=False, pre=False)
    image_only.image_mask[:] = True
    image_only.text.field[:] = -1
    image_only.text.tokens[:] = 0
    out = m(collate(image_only, np.arange(4), "cpu"))
    assert torch.allclose(out.embedding.norm(dim=-1), torch.ones(4), atol=1e-5)  # not a zero vector at init
    mean = F.normalize(torch.as_tensor(image_only.image, dtype=torch.float32).mean((1, 2)), dim=-1)
    assert torch.allclose(out.embedding, F.normalize(m.image_skip(mean), dim=-1), atol=1e-5)
    # residual maps: own optimizer group (no decay, scaled peak lr); the other groups keep the given lr
    opt = m.configure_optimizer(1e-3, 0.01, residual_lr_scale=0.0)
    skip = {id(p) for p in (*m.text_skip.parameters(), *m.image_skip.parameters(), *m.pre_skip.parameters())}
    (group,) = [g for g in opt.param_groups if {id(p) for p in g["params"]} & skip]
    assert {id(p) for p in group["params"]} == skip and group["lr"] == 0.0 and group["weight_decay"] == 0.0
    assert [g["lr"] for g in opt.param_groups if g is not group] == [1e-3, 1e-3]
    assert [g["lr"] for g in m.configure_optimizer(1e-3, 0.01, residual_lr_scale=0.5).param_groups][-1] == 5e-4
    off = OmniEmbeddingModel(tiny_config(enc, text_residual=False, image_residual=False, precomputed_residual=False))
    assert off.text_skip is None and off.image_skip is None and not off.pre_skip


def test_field_dropout_never_empties_text_only_item(make_encoded, tiny_config):
    torch.manual_seed(0)
    text_only = make_encoded(64, seed=3, image=False, audio=False, pre=False)
    m = OmniEmbeddingModel(tiny_config(text_only, field_drop_prob=0.95)).train()
    out = m(collate(text_only, np.arange(64), "cpu"))
    assert (out.token_mask[:, 1:].sum(1) > 0).all()  # some text left on every item
    full = torch.as_tensor(text_only.text.field >= 0)
    assert out.token_mask[:, 1:].sum() < full.sum()  # but fields were dropped


def test_batch_missing_configured_modality_errors(enc, make_encoded, tiny_config):
    m = OmniEmbeddingModel(tiny_config(make_encoded(2, image=False, audio=False, pre=False)))
    with pytest.raises(ValueError, match="configured without (audio|image)"):
        m(collate(enc, np.arange(2), "cpu"))


def test_logmel_audio_token(make_encoded, tiny_config):
    enc = make_encoded(3, seed=4, image=False, audio=False, pre=False)
    enc.audio = np.random.default_rng(0).normal(size=(3, 2, 8, 20)).astype(np.float16)
    enc.audio_mask = np.array([[True, True], [True, False], [False, False]])
    enc.audio_kind = "logmel"
    cfg = tiny_config(enc)
    assert (cfg.audio_kind, cfg.audio_dim) == ("logmel", 8)
    model = OmniEmbeddingModel(cfg).eval()
    assert isinstance(model.audio.encoder, ConvAudioEncoder)  # log-mel chunks are encoded by a trainable conv net
    out = model(collate(enc, np.arange(3), "cpu"))
    assert out.token_mask[:, 1].tolist() == [True, True, False]


def test_save_load_round_trip(model, enc, tiny_config, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.safetensors", "config.json"}
    loaded = OmniEmbeddingModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    batch = collate(enc, np.arange(len(enc)), "cpu")
    assert torch.equal(loaded(batch).embedding, model(batch).embedding)
    with pytest.raises(DataError, match="nothing: no config.json"):
        OmniEmbeddingModel.from_pretrained(tmp_path / "nothing")
    # weights that do not fit the config (another model version) are refused naming the file, not a traceback
    other = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**other, "precomputed_residual": False}))
    with pytest.raises(DataError, match=r"model.safetensors: the weights do not match config.json \(missing \[\], "
                                         r"unexpected \['pre_skip.clip.weight'\]\)"):
        OmniEmbeddingModel.from_pretrained(tmp_path / "m")
    # a model saved before the residual paths existed (no such keys in config.json) loads without them
    old = OmniEmbeddingModel(tiny_config(enc, text_residual=False, image_residual=False))
    old.save_pretrained(tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("text_residual", "image_residual", "head_init_std"):
        raw.pop(key)
    (tmp_path / "old" / "config.json").write_text(json.dumps(raw))
    assert OmniEmbeddingModel.from_pretrained(tmp_path / "old").text_skip is None


def test_item_memory_starts_at_zero_learns_and_round_trips(model, enc, tmp_path):
    """with_memory adds the item memory with a zero output (same embeddings), it can then fit item-specific
    targets, and it survives save/load. Its inputs see every modality and are zero for absent ones."""
    batch = collate(enc, np.arange(len(enc)), "cpu")
    mem = model.with_memory(64)
    assert mem.config.memory_hidden == 64 and model.memory is None and mem.with_memory(64) is mem
    assert torch.equal(mem(batch).embedding, model(batch).embedding)
    feats = mem.memory.features(batch, batch["text_field"] >= 0)
    assert feats.shape == (len(enc), sum(d for _, d in mem.memory.parts))
    assert [n for n, _ in mem.memory.parts] == ["text", "image", "audio", "pre_clip"]
    no_img = ~enc.image_mask.any(1)
    dt, di = enc.text.tokens.shape[-1], enc.image.shape[-1]
    img = slice(dt * len(TEXT_FIELDS), dt * len(TEXT_FIELDS) + di)
    assert no_img.any() and torch.all(feats[torch.as_tensor(no_img), img] == 0)
    # fit random unit targets through the memory only: every item is told apart from content
    target = F.normalize(torch.randn(len(enc), 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    opt = torch.optim.Adam(mem.memory.parameters(), lr=1e-2)
    for _ in range(200):
        loss = (1 - (mem(batch).embedding * target).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05
    mem.eval().save_pretrained(tmp_path / "mem")
    loaded = OmniEmbeddingModel.from_pretrained(tmp_path / "mem")
    assert loaded.config.memory_hidden == 64 and torch.equal(loaded(batch).embedding, mem(batch).embedding)
    with pytest.raises(ValueError, match="already has an item memory"):
        mem.with_memory(32)


def test_gated_late_fusion_mixes_non_text_tokens_only_where_there_are_some(enc, tiny_config, tmp_path):
    torch.manual_seed(0)
    plain = OmniEmbeddingModel(tiny_config(enc)).eval()
    torch.manual_seed(0)
    late = OmniEmbeddingModel(tiny_config(enc, late_fusion=True)).eval()
    shared = {k: v for k, v in late.state_dict().items() if not k.startswith("late_")}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())   # the same model besides
    text_only = enc.without("image").without("audio")
    for name in list(text_only.precomputed):
        text_only = text_only.without(f"vec_{name}")
    rows = np.arange(len(enc))
    with torch.no_grad():
        a, b = plain(collate(text_only, rows)).raw, late(collate(text_only, rows)).raw
        assert torch.equal(a, b)                                          # no non-text token: the fused output
        full_a, full_b = plain(collate(enc, rows)).raw, late(collate(enc, rows)).raw
    has = collate(enc, rows)["image_mask"].any(1)
    assert not torch.allclose(full_a[has], full_b[has])                   # mixed where the item has an image
    late.save_pretrained(tmp_path / "m")
    again = OmniEmbeddingModel.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(again(collate(enc, rows)).raw, full_b)
