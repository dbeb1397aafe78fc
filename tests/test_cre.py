"""CRE (seq2item + ID2item distillation) and its evaluators: sequences, losses, quality, cold start, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from embedding.cre import (CREConfig, ProjectionHead, aux_i2i_pairs, history_query, load_heads, lr_factor,
                           project, run_cre)
from embedding.cre_eval import (BijectiveAlignmentEvaluator, ClusterNMIEvaluator, CREEvalConfig, ItemSpace,
                                NeighbourAgreementEvaluator, Seq2ItemEvaluator, bijective_alignment,
                                build_cre_evaluators, model_space, run_cre_evaluators, teacher_matrix)
from embedding.encoders.types import EncodedItems, TextTokens
from embedding.infer import embed_items
from embedding.losses import DistillationLoss
from embedding.model import OmniEmbeddingConfig, OmniEmbeddingModel
from embedding.tasks import PairConfig, SequenceSet, build_i2i_pairs, build_sequences, seq2item_events
from recsys.data.dataset import Dataset, build_dataset
from recsys.data.schema import PositiveRule

DT, LT = 32, 6
N_COMM, PER_COMM, N_CAT, N_COLD = 8, 24, 4, 16
TEACHER_DIM = 16


def make_world(seed: int = 0):
    """Items carry a visible content category (text tokens = category centre + noise) and a HIDDEN community
    (independent of the category, invisible in content). Users engage items of one community; the fake
    teacher's vectors encode the community. N_COLD items are created in the test period and never engaged."""
    rng = np.random.default_rng(seed)
    n_warm = N_COMM * PER_COMM
    n = n_warm + N_COLD
    community = np.r_[np.repeat(np.arange(N_COMM), PER_COMM), np.full(N_COLD, -1)]
    category = rng.integers(N_CAT, size=n)
    item_ids = np.arange(5000, 5000 + n, dtype=np.int64)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    created = [t0 - pd.Timedelta(days=1)] * n_warm + [t0 + pd.Timedelta(days=200)] * N_COLD
    items = pd.DataFrame({"item_id": item_ids, "title": [f"item {i}" for i in range(n)],
                          "categories": [[f"cat{c}"] for c in category], "tags": [[] for _ in range(n)],
                          "created_at": pd.to_datetime(created, utc=True)})
    rows = []
    for u in range(160):
        c = rng.integers(N_COMM)
        seq = rng.choice(np.flatnonzero(community == c), 14, replace=False)
        start = t0 + pd.Timedelta(days=float(rng.uniform(0, 50)))
        for k, i in enumerate(seq):
            rows.append((u, item_ids[i], start + pd.Timedelta(hours=k), 1.0))
        rows.append((u, item_ids[rng.integers(n_warm)], start + pd.Timedelta(hours=20), 0.0))  # a non-positive
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "like"])
    # the split cuts after the last interaction of the train window: pin it so the world is easy to reason about
    ds = build_dataset(name="cre-toy", source="test", items=items, interactions=inter, labels={"like": "like"},
                       positive=PositiveRule("like", 1.0), split=(0.05, 0.05))
    # content = a strong category centre + a faint community direction + an item-specific "identity" + noise:
    # under the content-only model neighbours share the category, not the community (which drives engagement)
    centres = 3.0 * rng.normal(size=(N_CAT, DT))
    faint = 0.5 * rng.normal(size=(N_COMM + 1, DT))[community]
    identity = rng.normal(size=(n, DT))
    tokens = ((centres[category] + faint + identity)[:, None, :] + 0.3 * rng.normal(size=(n, LT, DT)))
    tokens = tokens.astype(np.float16)
    field = np.full((n, LT), 3, np.int8)
    enc = EncodedItems(item_ids=item_ids, text=TextTokens(tokens, field), audio_kind="embedding",
                       pooled_text=tokens.astype(np.float32).mean(1))
    comm_vec = rng.normal(size=(N_COMM, TEACHER_DIM))
    train = ds.split.train(ds.interactions)
    vocab = np.unique(train.loc[ds.is_positive(train), "item_id"])
    vrow = vocab - 5000
    tvec = comm_vec[community[vrow]] + 0.3 * rng.normal(size=(len(vocab), TEACHER_DIM))
    tvec /= np.linalg.norm(tvec, axis=1, keepdims=True)
    teacher = pd.DataFrame({"item_id": vocab, "embedding": list(tvec.astype(np.float32)), "model_version": "fake"})
    return ds, enc, teacher, community, category


def tiny_model_cfg() -> OmniEmbeddingConfig:
    return OmniEmbeddingConfig(text_dim=DT, hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32,
                               matryoshka_dims=[8, 16], field_drop_prob=0.0)


def tiny_cre(**kw) -> CREConfig:
    base = dict(seq2item_steps=40, id2item_steps=40, batch_size=24, aux_batch_size=16, lr=3e-3, head_lr=5e-3,
                warmup_steps=3, history_grad=3, bank_refresh_every=10, checkpoint_every=20,
                log_every=20, eval_max_queries=200, num_threads=1, pairs=PairConfig(holdout_fraction=0.15))
    return CREConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def base_dir(world, tmp_path_factory):
    """The content-only model: a seeded, untrained model (its embeddings are a random function of content)."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("base") / "model"
    OmniEmbeddingModel(tiny_model_cfg()).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def trained(world, base_dir, tmp_path_factory):
    ds, enc, teacher, _, _ = world
    out = tmp_path_factory.mktemp("cre")
    return run_cre(ds, enc, base_dir, {"fake": teacher}, tiny_cre(seq2item_steps=60, id2item_steps=60), out, "cpu"), out


def _weights(d) -> dict[str, torch.Tensor]:
    return OmniEmbeddingModel.from_pretrained(d).state_dict()


# ---- config -----------------------------------------------------------------------------------------------
def test_config_validation():
    c = CREConfig()
    assert (c.seq2item_steps, c.id2item_steps, c.history_len) == (600, 600, 10)
    assert c.sequence_mix == {"vanilla": 0.5, "filtered": 0.5}
    with pytest.raises(ValueError, match="zigzag"):
        CREConfig(sequence_mix={"zigzag": 1.0})
    with pytest.raises(ValueError, match="seq2item_stpes"):
        CREConfig(seq2item_stpes=3)
    with pytest.raises(ValueError, match="min_history"):
        CREConfig(min_history=11)
    cfg = CREConfig(seq2item_steps=10, id2item_steps=20, warmup_steps=2, lr=1e-3, min_lr=1e-4)
    f = [lr_factor(s, cfg) for s in range(30)]
    assert f[0] < f[1] < f[2] == pytest.approx(1.0) and 0.1 < f[9] < 0.2  # warmup, then cosine towards min_lr
    assert f[10] < 0.5 and f[12] == pytest.approx(1.0) and 0.1 < f[-1] < 0.12  # each stage warms up again


# ---- sequences ----------------------------------------------------------------------------------------------
def _events(items, user=1):
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({"user_id": user, "item_id": np.asarray(items, np.int64),
                         "timestamp": [t0 + pd.Timedelta(hours=h) for h in range(len(items))]})


def test_vanilla_and_filtered_sequences():
    items = np.arange(100, 116)  # 15 earlier items then the target 115
    ev = _events(items)
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(16, 8))
    similar = [101, 104, 105, 107, 109, 110, 111, 112, 113, 114]  # the 10 closest to the target
    vec[[i - 100 for i in similar]] = vec[15] + 0.01 * rng.normal(size=(10, 8))
    van = build_sequences(ev, "vanilla", 10, last_only=True, seed=0)
    fil = build_sequences(ev, "filtered", 10, items, vec, last_only=True)
    for s in (van, fil):
        assert len(s) == 1 and s.target[0] == 115 and s.history.shape == (1, 10)
        assert 115 not in s.history[0] and (np.diff(s.history[0]) > 0).all()  # time order, no target
        assert set(s.history[0]) <= set(items[:15])
    assert fil.history[0].tolist() == similar
    assert van.history[0].tolist() != similar  # a random draw (fixed by the seed)
    assert build_sequences(ev, "vanilla", 10, last_only=True, seed=0).history.tolist() == van.history.tolist()
    # every position with >= min_history earlier items is a target; short histories are padded with -1
    allp = build_sequences(ev, "vanilla", 10, min_history=3)
    assert allp.target.tolist() == items[3:].tolist()
    assert allp.history[0].tolist() == [100, 101, 102] + [-1] * 7 and allp.lengths.tolist()[:2] == [3, 4]
    # repeats of the target are no history; lookback bounds the window
    rep = build_sequences(_events([7, 8, 9, 7]), "vanilla", 10, last_only=True)
    assert rep.history[0].tolist()[:2] == [8, 9] and (rep.history[0][2:] == -1).all()
    assert build_sequences(ev, "vanilla", 10, max_lookback=4, last_only=True).lengths[0] == 4
    with pytest.raises(ValueError, match="item vectors"):
        build_sequences(ev, "filtered", 10)
    with pytest.raises(ValueError, match="unknown sequence kind"):
        build_sequences(ev, "random")


def test_sequences_see_train_split_only(world):
    ds, _, _, _, _ = world
    hist, targets = seq2item_events(ds)
    train = ds.split.train(ds.interactions)
    assert hist["timestamp"].max() < ds.split.train_end and targets["timestamp"].max() < ds.split.train_end
    pos = train.loc[ds.is_positive(train)]
    once = pos["user_id"].value_counts().eq(1).sum()  # users with one train positive have no target
    assert len(hist) + len(targets) == len(pos) - once and len(targets) == pos["user_id"].nunique() - once
    assert targets["user_id"].is_unique
    # events after the train cut-off change no sequence
    stamps = ([ds.split.train_end + pd.Timedelta(minutes=m) for m in range(20)]
              + [ds.split.valid_end + pd.Timedelta(minutes=m) for m in range(20)])
    late = pd.DataFrame({"user_id": [0] * 20 + [999] * 20, "item_id": np.tile(ds.items["item_id"].to_numpy()[:20], 2),
                         "timestamp": pd.Series(stamps, dtype="datetime64[us, UTC]"), "like": np.float32(1.0)})
    grown = Dataset(ds.manifest, ds.items, pd.concat([ds.interactions, late], ignore_index=True))
    h2, t2 = seq2item_events(grown)
    pd.testing.assert_frame_equal(hist, h2)
    pd.testing.assert_frame_equal(targets, t2)
    a, b = (build_sequences(h, "vanilla", 10, min_history=3, seed=1) for h in (hist, h2))
    assert np.array_equal(a.history, b.history) and np.array_equal(a.target, b.target)


def test_aux_pairs_never_see_evaluation_targets(world):
    ds, _, _, _, _ = world
    _, targets = seq2item_events(ds)
    # a user whose last train positive is an item nobody else engages: it forms pairs only with that user's
    # previous items, so it is in the content trainer's pairs but must not be in the CRE aux pairs
    unique_item = int(ds.items["item_id"].iloc[0])
    others = ds.interactions.loc[ds.interactions["item_id"] != unique_item]
    t = ds.split.train_end - pd.Timedelta(days=1)
    extra = pd.DataFrame({"user_id": 777, "item_id": [5001, 5002, unique_item],
                          "timestamp": [t, t + pd.Timedelta(hours=1), t + pd.Timedelta(hours=2)],
                          "like": np.float32(1.0)})
    ds2 = Dataset(ds.manifest, ds.items, pd.concat([others, extra], ignore_index=True).sort_values("timestamp"))
    cfg = PairConfig(holdout_fraction=0.0)
    full = build_i2i_pairs(ds2, cfg).train
    assert ((full["query"] == unique_item) | (full["target"] == unique_item)).any()
    pairs, held = aux_i2i_pairs(ds2, seq2item_events(ds2)[1], cfg)
    assert len(pairs) and not ((pairs["query"] == unique_item) | (pairs["target"] == unique_item)).any()
    # items held out by the content stage's i2i split are in no aux pair
    pairs, held = aux_i2i_pairs(ds, targets, PairConfig(holdout_fraction=0.2))
    assert held and not (pairs["query"].isin(held) | pairs["target"].isin(held)).any()


# ---- batches and losses -------------------------------------------------------------------------------------
def test_history_query_is_mean_of_history_embeddings(world):
    _, enc, _, _, _ = world
    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_model_cfg()).eval()
    allv = torch.as_tensor(embed_items(model, enc, device="cpu", role="target", task="i2i"))  # (N, D)
    rng = np.random.default_rng(0)
    B, L = 6, 10
    hist = rng.choice(len(enc), size=(B, L))
    hist[0, 7:] = -1  # a shorter history
    tgt = rng.choice(len(enc), size=B)
    expect = torch.stack([allv[h[h >= 0]].mean(0) for h in hist])  # mean of the model's embeddings
    for g in (L, 2):  # exact (all live) and with the bank for the non-live slots
        live = np.zeros((B, L), bool)
        live[:, :g] = True
        live &= hist >= 0
        rows = np.unique(np.concatenate([tgt, hist[live]]))
        emb = allv[rows].clone().requires_grad_(True)
        q = history_query(emb, rows, hist, live, allv if g < L else None)
        assert q.shape == (B, 32)
        torch.testing.assert_close(q, expect)
        q.sum().backward()
        got_grad = emb.grad.abs().sum(1) > 0
        assert set(rows[got_grad.numpy()]) == set(hist[live])  # gradients reach only the live history items
    with pytest.raises(ValueError, match="bank"):
        history_query(allv[rows], rows, hist, np.zeros((B, L), bool) | (hist >= 0) & False, None)


def test_distillation_loss():
    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    ident = nn.Identity()
    loss = DistillationLoss(head=ident, cosine_weight=1.0, contrastive_weight=0.0)
    assert loss.compute_loss_from_embeddings([t], t).item() == pytest.approx(0.0, abs=1e-6)  # perfect student
    both = DistillationLoss(head=ident, temperature=0.05)
    good = both.compute_loss_from_embeddings([t], t).item()
    bad = both.compute_loss_from_embeddings([t[torch.randperm(16)]], t).item()
    assert good < 0.05 < 1.0 < bad and set(both.last) == {"cosine", "contrastive"}
    head = ProjectionHead(32, 16, 8)
    x = torch.randn(16, 32)
    out = DistillationLoss(head=head).compute_loss_from_embeddings([x], t)
    out.backward()
    assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(ValueError, match="shapes"):
        DistillationLoss(head=ProjectionHead(32, 16, 4)).compute_loss_from_embeddings([x], t)
    with pytest.raises(ValueError, match="both 0"):
        DistillationLoss(head=ident, cosine_weight=0, contrastive_weight=0)


# ---- evaluators on known answers ------------------------------------------------------------------------------
def test_evaluators_known_answers():
    rng = np.random.default_rng(0)
    ids = np.arange(60, dtype=np.int64) + 10
    labels = np.repeat(np.arange(4), 15)
    onehot = np.eye(4)[labels] + 0.01 * rng.normal(size=(60, 4))
    nmi = ClusterNMIEvaluator(pd.Series([f"c{x}" for x in labels], index=ids))
    assert nmi(ItemSpace(ids, onehot))["nmi/category"] == pytest.approx(1.0)
    assert nmi(ItemSpace(ids, rng.normal(size=(60, 4))))["nmi/category"] < 0.3
    vec = rng.normal(size=(60, 12)).astype(np.float32)
    same = NeighbourAgreementEvaluator("t", ids, vec / np.linalg.norm(vec, axis=1, keepdims=True), k=10)
    m = same(ItemSpace(ids, vec))
    assert m["teacher_t/top10_overlap"] == 1.0 and m["teacher_t/kendall_tau"] == pytest.approx(1.0)
    other = same(ItemSpace(ids, rng.normal(size=(60, 12))))
    assert other["teacher_t/top10_overlap"] < 0.5 and abs(other["teacher_t/kendall_tau"]) < 0.5
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    assert bijective_alignment(unit, unit) == {"bijective": 1.0, "top1": 1.0}
    assert bijective_alignment(unit, unit[::-1].copy())["top1"] < 0.1
    head = BijectiveAlignmentEvaluator("t", ids, unit, "head")
    assert head(ItemSpace(ids, rng.normal(size=(60, 5)), {"t": unit}))["align_t/bijective"] == 1.0
    assert head(ItemSpace(ids, unit)) == {}  # no projection for this teacher: skipped
    probe = BijectiveAlignmentEvaluator("t", ids, unit, "probe", ridge=1e-6)
    assert probe(ItemSpace(ids, unit @ rng.normal(size=(12, 12))))["probe_t/bijective"] == 1.0  # linear map
    # seq2item: the target is the direction of the history mean -> found at rank 1; orthogonal -> never
    basis = np.eye(60, dtype=np.float32)
    v = basis.copy()
    v[0] = (basis[1] + basis[2] + basis[3]) / np.sqrt(3)  # item 10 = mean of items 11, 12, 13
    seqs = SequenceSet("vanilla", np.array([1]), np.array([[11, 12, 13, -1]]), np.array([10]))
    ev = Seq2ItemEvaluator("s", seqs, (1, 10))
    assert ev(ItemSpace(ids, v)) == {"s/n_queries": 1.0, "s/recall@1": 1.0, "s/recall@10": 1.0}
    assert ev(ItemSpace(ids, basis))["s/recall@10"] < 1.0  # all ties at 0: not reliably found
    far = SequenceSet("vanilla", np.array([1]), np.array([[11, 12, 13, -1]]), np.array([50]))
    assert Seq2ItemEvaluator("s", far, (1,))(ItemSpace(ids, v))["s/recall@1"] == 0.0
    with pytest.raises(ValueError, match="duplicate"):
        teacher_matrix(pd.DataFrame({"item_id": [1, 1], "embedding": [np.ones(2), np.ones(2)]}))


# ---- the run: quality, cold start, persistence --------------------------------------------------------------
def test_cre_raises_collaborative_metrics(trained):
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
    assert m["cold/items"] == N_COLD and res.steps_per_sec > 0 and m["train/steps"] == 120
    assert res.info["sequences"]["vanilla"]["sequences"] > 0 and res.info["distill_items"] == N_COMM * PER_COMM


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


def test_teacher_filtered_sequences(world, base_dir, tmp_path):
    ds, enc, teacher, _, _ = world
    res = run_cre(ds, enc, base_dir, {"fake": teacher}, tiny_cre(seq2item_steps=2, id2item_steps=2,
                                                                 filter_by="fake"), tmp_path / "t", "cpu")
    assert res.info["sequences"]["filtered"]["sequences"] > 0
    with pytest.raises(ValueError, match="filter_by='nope'"):
        run_cre(ds, enc, base_dir, {"fake": teacher}, tiny_cre(seq2item_steps=2, id2item_steps=2, filter_by="nope"),
                tmp_path / "n", "cpu")


def test_cold_start_items_embedded_from_content(world, trained):
    ds, enc, teacher, community, _ = world
    res, out = trained
    model = OmniEmbeddingModel.from_pretrained(res.model_dir)  # a plain omni model: heads live beside it
    assert not any(k.startswith("heads") for k in model.state_dict())
    cold = np.flatnonzero(community < 0)
    assert not np.isin(enc.item_ids[cold], teacher["item_id"]).any()
    emb = embed_items(model, enc, device="cpu", rows=cold)
    assert emb.shape == (N_COLD, 32) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    heads = load_heads(res.heads_path)
    proj = project(heads, emb)["fake"]
    assert proj.shape == (N_COLD, TEACHER_DIM) and np.isfinite(proj).all()
    space = model_space(res.model_dir, enc, res.heads_path, device="cpu")
    assert set(space.projected) == {"fake"} and np.allclose(space.vectors[cold], emb, atol=1e-5)


@pytest.mark.parametrize("finetune_fusion", [False, True], ids=["frozen_fusion", "finetune_fusion"])
def test_resume_equals_uninterrupted_and_rerun_is_noop(world, base_dir, tmp_path, finetune_fusion):
    ds, enc, teacher, _, _ = world
    cfg = tiny_cre(seq2item_steps=4, id2item_steps=4, checkpoint_every=2, finetune_fusion=finetune_fusion)
    full = run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "full", "cpu")

    class Interrupt(Exception):
        pass

    def stop_at_5(step, info):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "cut", "cpu", on_step=stop_at_5)
    state = torch.load(tmp_path / "cut" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 4 and (state["bank"] is not None) == finetune_fusion  # the bank: fine-tuning only
    resumed = run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "cut", "cpu")
    assert resumed.info["steps_this_run"] == 4
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = load_heads(full.heads_path).state_dict(), load_heads(resumed.heads_path).state_dict()
    assert all(torch.equal(ha[k], hb[k]) for k in ha)
    calls = []
    again = run_cre(ds, enc, base_dir, {"fake": teacher}, cfg, tmp_path / "cut", "cpu",
                    on_step=lambda s, i: calls.append(s))
    assert not calls and again.metrics == resumed.metrics
    # a checkpoint from other settings is refused, naming the key
    (tmp_path / "cut" / "cre_summary.json").unlink()
    with pytest.raises(ValueError, match="batch_size"):
        run_cre(ds, enc, base_dir, {"fake": teacher}, cfg.model_copy(update={"batch_size": 8}), tmp_path / "cut",
                "cpu")


def test_deterministic_under_seed(world, base_dir, tmp_path):
    ds, enc, teacher, _, _ = world
    cfg = tiny_cre(seq2item_steps=3, id2item_steps=3)
    runs = [run_cre(ds, enc, base_dir, {"fake": teacher}, c, tmp_path / str(i), "cpu")
            for i, c in enumerate([cfg, cfg, cfg.model_copy(update={"seed": 1})])]
    a, b, c = (_weights(r.model_dir) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert runs[0].metrics == runs[1].metrics


def test_build_evaluators_without_filter_vectors(world):
    ds, enc, teacher, _, _ = world
    evs = build_cre_evaluators(ds, enc.item_ids, {"fake": teacher}, CREEvalConfig(max_queries=50))
    names = [getattr(e, "name", "") for e in evs]
    assert "seq2item_vanilla" in names and "seq2item_filtered" not in names
    m = run_cre_evaluators(evs, ItemSpace(enc.item_ids, enc.pooled_text), prefix="text/")
    assert m["text/seq2item_vanilla/n_queries"] == 50 and m["text/nmi/category"] > 0.9  # category shows in text


# ---- with a real TorchRec teacher -------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_with_torchrec_id_teacher(tmp_path):
    from recsys.teachers import TeacherConfig, train_id_teacher
    from recsys.teachers.data import cluster_markov_dataset

    ds = cluster_markov_dataset(n_items=120, n_clusters=6, n_users=40, events_per_user=30, seed=0)
    n = len(ds.items)
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(n, LT, DT)).astype(np.float16)
    enc = EncodedItems(item_ids=ds.items["item_id"].to_numpy(np.int64),
                       text=TextTokens(tokens, np.full((n, LT), 0, np.int8)), audio_kind="embedding",
                       pooled_text=tokens.astype(np.float32).mean(1))
    teacher = train_id_teacher(ds, TeacherConfig(seed=0, two_tower={"epochs": 3, "batch": 256}), tmp_path / "t")
    torch.manual_seed(0)
    OmniEmbeddingModel(tiny_model_cfg()).save_pretrained(tmp_path / "base")
    res = run_cre(ds, enc, tmp_path / "base", {"id": teacher.item_embeddings}, tiny_cre(seq2item_steps=10,
                  id2item_steps=10), tmp_path / "cre", "cpu")
    assert res.metrics["train/steps"] == 20 and np.isfinite(res.metrics["align_id/bijective"])
    assert OmniEmbeddingModel.from_pretrained(res.model_dir).config.embed_dim == 32
