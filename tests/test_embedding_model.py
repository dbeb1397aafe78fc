"""Embedding model, losses, inference table, semantic IDs and evaluators on tiny random inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from embedding.encoders.types import TEXT_FIELDS, EncodedItems, TextTokens
from embedding.evaluate import RetrievalEvaluator, VectorEmbedder, exact_search
from embedding.infer import embed_items, embed_texts, pool_text_tokens, write_item_embeddings
from embedding.losses import CoSENTLoss, InfoNCELoss, MatryoshkaLoss
from embedding.model import OmniEmbeddingConfig, OmniEmbeddingModel, collate, collate_texts
from embedding.semantic_ids import ResidualKMeans
from recsys.data.dataset import build_dataset
from recsys.data.schema import PositiveRule

DT, DI, DA = 16, 12, 10


def make_encoded(n: int = 12, seed: int = 0, image: bool = True, audio: bool = True, pre: bool = True,
                 lt: int = 9, frames: int = 2, patches: int = 4) -> EncodedItems:
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n, lt, DT)).astype(np.float16)
    field = np.full((n, lt), -1, np.int8)
    for i in range(n):
        L = rng.integers(1, lt + 1)
        field[i, :L] = np.sort(rng.integers(0, len(TEXT_FIELDS), L))
    tokens[field < 0] = 0
    enc = EncodedItems(item_ids=np.arange(100, 100 + n, dtype=np.int64), text=TextTokens(tokens, field),
                       pooled_text=tokens.astype(np.float32).mean(1), audio_kind="embedding")
    if image:
        enc.image = rng.normal(size=(n, frames, patches, DI)).astype(np.float16)
        enc.image_mask = rng.random((n, frames)) < 0.7
        enc.image_mask[:, 0] |= rng.random(n) < 0.5
    if audio:
        enc.audio = rng.normal(size=(n, 3, DA)).astype(np.float16)
        enc.audio_mask = rng.random((n, 3)) < 0.6
    if pre:
        v = rng.normal(size=(n, 5)).astype(np.float32)
        v[::3] = np.nan
        enc.precomputed = {"clip": v}
    return enc


def tiny_config(enc: EncodedItems, **kw) -> OmniEmbeddingConfig:
    base = dict(hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32, matryoshka_dims=[8, 16], dropout=0.0)
    return OmniEmbeddingConfig(**{**base, **kw}).with_inputs(enc)


@pytest.fixture(scope="module")
def enc() -> EncodedItems:
    return make_encoded()


@pytest.fixture(scope="module")
def model(enc) -> OmniEmbeddingModel:
    torch.manual_seed(0)
    m = OmniEmbeddingModel(tiny_config(enc)).eval()
    # the fusion projection starts at 0 (untrained model = text baseline, see test_untrained_model_is_text_
    # baseline); give it weights as after training so the fusion path's wiring shows in the outputs
    torch.nn.init.normal_(m.head.weight, std=0.02)
    return m


# ---- config ---------------------------------------------------------------------------------------------
def test_config_from_inputs_and_validation(enc):
    cfg = tiny_config(enc)
    assert (cfg.text_dim, cfg.image_dim, cfg.audio_kind, cfg.audio_dim) == (DT, DI, "embedding", DA)
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


def test_text_only_and_image_only_items(model):
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


def test_untrained_model_is_text_baseline(enc):
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


def test_image_residual_only_for_items_without_text(enc):
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
    # residual maps: own optimizer group (no decay, scaled lr)
    opt = m.configure_optimizer(1e-3, 0.01, residual_lr_scale=0.0)
    skip = {id(p) for p in (*m.text_skip.parameters(), *m.image_skip.parameters())}
    (group,) = [g for g in opt.param_groups if {id(p) for p in g["params"]} & skip]
    assert {id(p) for p in group["params"]} == skip and group["lr_scale"] == 0.0 and group["weight_decay"] == 0.0
    off = OmniEmbeddingModel(tiny_config(enc, text_residual=False, image_residual=False))
    assert off.text_skip is None and off.image_skip is None


def test_field_dropout_never_empties_text_only_item(enc):
    torch.manual_seed(0)
    text_only = make_encoded(64, seed=3, image=False, audio=False, pre=False)
    m = OmniEmbeddingModel(tiny_config(text_only, field_drop_prob=0.95)).train()
    out = m(collate(text_only, np.arange(64), "cpu"))
    assert (out.token_mask[:, 1:].sum(1) > 0).all()  # some text left on every item
    full = torch.as_tensor(text_only.text.field >= 0)
    assert out.token_mask[:, 1:].sum() < full.sum()  # but fields were dropped


def test_batch_missing_configured_modality_errors(enc):
    m = OmniEmbeddingModel(tiny_config(make_encoded(2, image=False, audio=False, pre=False)))
    with pytest.raises(ValueError, match="configured without (audio|image)"):
        m(collate(enc, np.arange(2), "cpu"))


def test_logmel_audio_token():
    pytest.importorskip("embedding.encoders.audio")
    enc = make_encoded(3, seed=4, image=False, audio=False, pre=False)
    enc.audio = np.random.default_rng(0).normal(size=(3, 2, 8, 20)).astype(np.float16)
    enc.audio_mask = np.array([[True, True], [True, False], [False, False]])
    enc.audio_kind = "logmel"
    cfg = tiny_config(enc)
    assert (cfg.audio_kind, cfg.audio_dim) == ("logmel", 8)
    out = OmniEmbeddingModel(cfg).eval()(collate(enc, np.arange(3), "cpu"))
    assert out.token_mask[:, 1].tolist() == [True, True, False]


def test_save_load_round_trip(model, enc, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.safetensors", "config.json"}
    loaded = OmniEmbeddingModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    batch = collate(enc, np.arange(len(enc)), "cpu")
    assert torch.equal(loaded(batch).embedding, model(batch).embedding)
    with pytest.raises(FileNotFoundError):
        OmniEmbeddingModel.from_pretrained(tmp_path / "nothing")
    # a model saved before the residual paths existed (no such keys in config.json) loads without them
    import json
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
    img = slice(DT * len(TEXT_FIELDS), DT * len(TEXT_FIELDS) + DI)
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


# ---- losses ---------------------------------------------------------------------------------------------
def test_infonce_decreases_on_easy_problem():
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    q_net, t_net = torch.nn.Linear(8, 16), torch.nn.Linear(8, 16)
    loss = InfoNCELoss(keys=["a", "b"], temperature={"a": 0.1, "b": 0.5}, symmetric=True)
    assert math.isclose(loss.temperature("b").item(), 0.5, rel_tol=1e-6)
    opt = torch.optim.Adam([*q_net.parameters(), *t_net.parameters(), *loss.parameters()], lr=1e-2)
    losses = []
    for _ in range(60):
        l = loss.compute_loss_from_embeddings([F.normalize(q_net(x), dim=-1), F.normalize(t_net(x), dim=-1)],
                                              key="a")
        opt.zero_grad()
        l.backward()
        opt.step()
        losses.append(l.item())
    assert losses[-1] < 0.3 * losses[0]
    assert loss.temperature("b").item() == pytest.approx(0.5)  # untouched key keeps its temperature
    assert set(loss.get_config_dict()["temperature"]) == {"a", "b"}
    with pytest.raises(KeyError, match="no temperature"):
        loss.temperature("c")


def test_infonce_masks_duplicate_ids():
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]), dim=-1)
    t = q.clone()
    loss = InfoNCELoss(temperature=0.1, learnable=False)
    no_labels = loss.compute_loss_from_embeddings([q, t])
    # rows 0 and 2 share a target id: they are not each other's negatives -> lower loss
    labels = torch.tensor([[0, 5], [1, 6], [2, 5]])
    assert float(loss.compute_loss_from_embeddings([q, t], labels)) < float(no_labels)


def test_infonce_masks_known_positives():
    torch.manual_seed(0)
    q, t = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    loss = InfoNCELoss(temperature=0.1, learnable=False, symmetric=True)
    labels = torch.tensor([[0, 10], [1, 11], [2, 12], [3, 13]])  # all distinct: no id masking
    pos = torch.zeros(4, 4, dtype=torch.bool)
    assert float(loss.compute_loss_from_embeddings([q, t], labels, positives=pos)) == pytest.approx(
        float(loss.compute_loss_from_embeddings([q, t], labels)))
    pos[0, 1] = True  # target 1 is also a positive of query 0 (e.g. another label of the same item)
    logits = q @ t.T / 0.1
    masked = logits.clone()
    masked[0, 1] = float("-inf")
    target = torch.arange(4)
    expected = (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target)) / 2
    got = loss.compute_loss_from_embeddings([q, t], labels, positives=pos)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(got) != pytest.approx(float(loss.compute_loss_from_embeddings([q, t], labels)), rel=1e-5)
    with pytest.raises(ValueError, match="positives mask"):
        loss.compute_loss_from_embeddings([q, t], labels, positives=pos[:3])


def test_cosent_hand_computed():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scores = torch.tensor([1.0, 0.0, 0.5])
    cos = [1.0, 0.0, 1 / math.sqrt(2)]
    s = 20.0
    # ordered pairs (i, j) with score_i > score_j: (0,1), (0,2), (2,1): terms exp(s*(cos_j - cos_i))
    expected = math.log(1 + math.exp(s * (cos[1] - cos[0])) + math.exp(s * (cos[2] - cos[0]))
                        + math.exp(s * (cos[1] - cos[2])))
    got = CoSENTLoss(scale=s).compute_loss_from_embeddings([a, b], scores)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert CoSENTLoss().get_config_dict() == {"scale": 20.0}


def test_matryoshka_sums_prefix_losses():
    torch.manual_seed(0)
    q, t = torch.randn(6, 32), torch.randn(6, 32)
    base = InfoNCELoss(temperature=0.1, learnable=False)
    mrl = MatryoshkaLoss(base, [8, 16, 32], weights=[1.0, 2.0, 0.5])
    expected = sum(w * float(base.compute_loss_from_embeddings([F.normalize(q[:, :d], dim=-1),
                                                                F.normalize(t[:, :d], dim=-1)]))
                   for d, w in [(8, 1.0), (16, 2.0), (32, 0.5)])
    assert float(mrl.compute_loss_from_embeddings([q, t])) == pytest.approx(expected, rel=1e-5)
    assert mrl.get_config_dict()["dims"] == [8, 16, 32]
    with pytest.raises(ValueError, match="weights"):
        MatryoshkaLoss(base, [8, 16], weights=[1.0])


def test_loss_forward_embeds_with_model(model, enc):
    batch = collate(enc, np.arange(6), "cpu")
    loss = MatryoshkaLoss(InfoNCELoss(model, keys=["i2i"]), [8, 16, 32])
    value = loss([(batch, "query", "i2i"), (batch, "target", "i2i")], key="i2i")
    assert value.ndim == 0 and torch.isfinite(value)


# ---- inference + table ----------------------------------------------------------------------------------
def _toy_dataset(enc: EncodedItems):
    items = pd.DataFrame({"item_id": enc.item_ids, "title": [f"t{i}" for i in enc.item_ids],
                          "created_at": pd.Timestamp("2024-01-01", tz="UTC")
                          + pd.to_timedelta(np.arange(len(enc)), unit="h")})
    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": enc.item_ids[:3], "like": [1.0, 0.0, 1.0],
                          "timestamp": pd.date_range("2024-02-01", periods=3, freq="D", tz="UTC")})
    return build_dataset(name="toy", source="test", items=items, interactions=inter, labels={"like": "like"},
                         positive=PositiveRule("like", 1.0), split=(0.3, 0.3))


def test_embed_items_texts_and_write_table(model, enc, tmp_path):
    emb = embed_items(model, enc, batch_size=5, device="cpu")
    assert emb.shape == (len(enc), 32) and emb.dtype == np.float32
    ref = model(collate(enc, np.arange(len(enc)), "cpu")).embedding.detach().numpy()
    np.testing.assert_allclose(emb, ref, atol=1e-5)  # batching/sorting does not change results
    assert embed_items(model, enc, device="cpu", dim=16).shape == (len(enc), 16)
    q = embed_texts(model, enc.text, batch_size=4, device="cpu")
    assert q.shape == (len(enc), 32)
    np.testing.assert_allclose(pool_text_tokens(enc.text)[0],
                               enc.text.tokens[0][enc.text.field[0] >= 0].astype(np.float32).mean(0), rtol=1e-5)

    ds = _toy_dataset(enc)
    sids = ResidualKMeans(levels=2, codebook_size=4).fit(emb).encode(emb)
    path = write_item_embeddings(ds, enc.item_ids, emb, sids, "v1", tmp_path / "emb.parquet")
    schema = pq.read_schema(path)
    assert str(schema.field("embedding").type) == "list<element: float>"
    assert str(schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"
    df = pd.read_parquet(path)
    assert list(df.columns) == ["item_id", "embedding", "sid_0", "sid_1", "model_version", "event_timestamp"]
    assert df["sid_0"].dtype == np.int64 and (df["model_version"] == "v1").all()
    created = ds.items.set_index("item_id").loc[enc.item_ids, "created_at"].reset_index(drop=True)
    pd.testing.assert_series_equal(df["event_timestamp"], created, check_names=False)
    np.testing.assert_allclose(np.stack(df["embedding"]), emb)

    bad = list(emb)
    bad[3] = bad[3][:10]
    with pytest.raises(ValueError, match=r"item_id 103 has dimension 10, expected 32"):
        write_item_embeddings(ds, enc.item_ids, bad, sids, "v1", tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="expected 64"):
        write_item_embeddings(ds, enc.item_ids, emb, sids, "v1", tmp_path / "bad.parquet", expected_dim=64)
    assert not (tmp_path / "bad.parquet").exists()


# ---- semantic IDs ---------------------------------------------------------------------------------------
def test_residual_kmeans_shapes_determinism_and_save(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    a = ResidualKMeans(levels=3, codebook_size=8, seed=1).fit(emb)
    codes = a.encode(emb)
    assert codes.shape == (300, 3) and codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < 8
    np.testing.assert_array_equal(codes, ResidualKMeans(levels=3, codebook_size=8, seed=1).fit(emb).encode(emb))
    # residual levels reduce the reconstruction error
    err1 = np.linalg.norm(emb - a.codebooks[0][codes[:, 0]], axis=1).mean()
    err3 = np.linalg.norm(emb - a.decode(codes), axis=1).mean()
    assert err3 < err1
    a.save(tmp_path / "sid.npz")
    b = ResidualKMeans.load(tmp_path / "sid.npz")
    np.testing.assert_array_equal(b.encode(emb), codes)
    assert b.levels == 3 and b.codebook_size == 8
    assert ResidualKMeans(levels=2, codebook_size=64).fit(emb[:10]).encode(emb[:10]).max() < 10
    assert 0 <= a.stats(emb)["sid/collision_rate"] < 1
    with pytest.raises(RuntimeError, match="not fitted"):
        ResidualKMeans().encode(emb)


# ---- evaluator ------------------------------------------------------------------------------------------
def test_retrieval_evaluator_known_answer():
    corpus = np.eye(4, dtype=np.float32)  # items 10..13
    corpus_keys = [10, 11, 12, 13]
    # query item 10 has relevant item 11; query item 12 has relevant 13
    ev = RetrievalEvaluator("i2i", "item", [10, 12], "item", corpus_keys,
                            [np.array([1]), np.array([3])], task="i2i", ks=(1, 3), exclude_self=True)
    item_vecs = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0], [1, 0, -0.5, 0]], np.float32)
    # query 10 (itself excluded): 11 (cos .99) then 13 (.89) -> hit@1; query 12: 10, 11 (cos 0) before 13 (< 0)
    m = ev.score(item_vecs[[0, 2]], item_vecs)
    assert m["i2i/recall@1"] == pytest.approx(0.5) and m["i2i/recall@3"] == pytest.approx(1.0)
    assert ev.primary_metric == "i2i/recall@1" and ev.greater_is_better
    m2 = ev(VectorEmbedder(np.array(corpus_keys), item_vecs))
    assert m2 == m
    scores, idx = exact_search(corpus[:1], corpus, 2)
    assert idx[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0)
