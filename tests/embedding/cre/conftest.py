"""The CRE test world, shared by the tests of embedding/cre.

Items carry a visible content category and a hidden community (what drives engagement); a fake teacher's vectors
encode the community; N_COLD items are created in the test period and never engaged.

Fixtures:
    cre_world   SimpleNamespace(ds, enc, teacher, community, category, n_cold, per_comm, n_comm, teacher_dim)
    tiny_cre    a factory of small CREConfigs (overrides as keyword arguments)
    tiny_model_cfg   the content model's config (text_dim 32, embed_dim 32)
    base_dir    a saved, seeded, untrained content model (its embeddings are a random function of content)
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.cre import CREConfig
from embedding.encoders.types import EncodedItems, TextTokens
from embedding.model import OmniEmbeddingModel
from embedding.model_config import OmniEmbeddingConfig
from embedding.tasks import PairConfig
from recsys.data.dataset import build_dataset
from recsys.data.schema import PositiveRule

DT, LT = 32, 6
N_COMM, PER_COMM, N_CAT, N_COLD = 8, 24, 4, 16
TEACHER_DIM = 16


def _make_world(seed: int = 0):
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


def _tiny_model_cfg() -> OmniEmbeddingConfig:
    return OmniEmbeddingConfig(text_dim=DT, hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32,
                               matryoshka_dims=[8, 16], field_drop_prob=0.0)


def _tiny_cre(**kw) -> CREConfig:
    base = dict(seq2item_steps=40, id2item_steps=40, batch_size=24, aux_batch_size=16, lr=3e-3, head_lr=5e-3,
                warmup_steps=3, history_grad=3, bank_refresh_every=10, checkpoint_every=20,
                log_every=20, eval_max_queries=200, num_threads=1, pairs=PairConfig(holdout_fraction=0.15))
    return CREConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def cre_world() -> SimpleNamespace:
    ds, enc, teacher, community, category = _make_world()
    return SimpleNamespace(ds=ds, enc=enc, teacher=teacher, community=community, category=category, n_cold=N_COLD,
                           per_comm=PER_COMM, n_comm=N_COMM, teacher_dim=TEACHER_DIM, text_dim=DT, tokens=LT)


@pytest.fixture(scope="session")
def tiny_cre() -> Callable[..., CREConfig]:
    return _tiny_cre


@pytest.fixture(scope="session")
def tiny_model_cfg() -> OmniEmbeddingConfig:
    return _tiny_model_cfg()


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("base") / "model"
    OmniEmbeddingModel(_tiny_model_cfg()).save_pretrained(d)
    return d
