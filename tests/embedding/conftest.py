"""Tiny random encoder outputs and a tiny model config shared by the embedding tests.

Fixtures:
    make_encoded(n, seed, image, audio, pre, lt, frames, patches) -> EncodedItems   (a factory)
    tiny_config(enc, **overrides) -> OmniEmbeddingConfig sized to `enc`              (a factory)
    enc     12 items with every modality (some absent per item)
    model   a seeded model over `enc` whose fusion projection is not zero (as after training)
    pair_world  SimpleNamespace(ds, enc, per_cluster, encode_texts): items in clusters that users engage in
            sequence, text tokens = cluster centre + noise (the content trainer's and the pair builders' world)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.encoders.types import TEXT_FIELDS, EncodedItems, TextTokens
from embedding.model import OmniEmbeddingModel
from embedding.model_config import OmniEmbeddingConfig
from recsys.data.dataset import Dataset, build_dataset
from recsys.data.schema import PositiveRule

DT, DI, DA = 16, 12, 10  # text token, image patch and audio chunk feature sizes of `make_encoded`


def _make_encoded(n: int = 12, seed: int = 0, image: bool = True, audio: bool = True, pre: bool = True,
                  lt: int = 9, frames: int = 2, patches: int = 4) -> EncodedItems:
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n, lt, DT)).astype(np.float16)
    field = np.full((n, lt), -1, np.int8)
    for i in range(n):
        length = rng.integers(1, lt + 1)
        field[i, :length] = np.sort(rng.integers(0, len(TEXT_FIELDS), length))
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


def _tiny_config(enc: EncodedItems, **kw) -> OmniEmbeddingConfig:
    base = dict(hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32, matryoshka_dims=[8, 16], dropout=0.0)
    return OmniEmbeddingConfig(**{**base, **kw}).with_inputs(enc)


@pytest.fixture(scope="session")
def make_encoded() -> Callable[..., EncodedItems]:
    return _make_encoded


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., OmniEmbeddingConfig]:
    return _tiny_config


@pytest.fixture(scope="module")
def enc() -> EncodedItems:
    return _make_encoded()


@pytest.fixture(scope="module")
def model(enc) -> OmniEmbeddingModel:
    torch.manual_seed(0)
    m = OmniEmbeddingModel(_tiny_config(enc)).eval()
    # the fusion projection starts at 0 (untrained model = text baseline, see test_untrained_model_is_text_
    # baseline); give it weights as after training so the fusion path's wiring shows in the outputs
    torch.nn.init.normal_(m.head.weight, std=0.02)
    return m


PAIR_DT = 16
N_CLUSTERS, PER_CLUSTER = 8, 20
WORDS = ["comet", "river", "falcon", "ember", "glacier", "meadow", "thunder", "velvet", "harbor", "lantern"]


def _pair_world(seed: int = 0) -> tuple[Dataset, EncodedItems]:
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
    centres = rng.normal(size=(N_CLUSTERS, PAIR_DT))
    lt = 6
    tokens = (centres[cluster][:, None, :] + 1.0 * rng.normal(size=(n, lt, PAIR_DT))).astype(np.float16)
    field = np.zeros((n, lt), np.int8)
    field[:, 3:] = 3
    field[rng.random(n) < 0.3, 4:] = -1
    tokens[field < 0] = 0
    enc = EncodedItems(item_ids=item_ids, text=TextTokens(tokens, field), audio_kind="embedding",
                       pooled_text=np.stack([tokens[i][field[i] >= 0].astype(np.float32).mean(0) for i in range(n)]))
    return ds, enc


def _fake_encode_texts(texts: list[str]) -> TextTokens:
    tokens = np.zeros((len(texts), 3, PAIR_DT), np.float16)
    for i, t in enumerate(texts):
        tokens[i] = np.random.default_rng(zlib.crc32(t.encode())).normal(size=(3, PAIR_DT))
    return TextTokens(tokens, np.zeros((len(texts), 3), np.int8))


@pytest.fixture(scope="module")
def pair_world() -> SimpleNamespace:
    ds, enc = _pair_world()
    return SimpleNamespace(ds=ds, enc=enc, per_cluster=PER_CLUSTER, encode_texts=_fake_encode_texts)
