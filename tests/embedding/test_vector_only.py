"""Items that carry only precomputed vectors (no text, no media): a real embedding through the precomputed
residual path, semantic IDs with more than one code, neighbourhoods of the vectors, training that leaves chance,
and bit-identical results for the same config and seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.encoders.types import EncodedItems, TextTokens
from embedding.infer import embed_items, write_item_embeddings
from embedding.model import OmniEmbeddingModel
from embedding.model_config import OmniEmbeddingConfig
from embedding.semantic_ids import ResidualKMeans
from embedding.train import EmbeddingTrainConfig, StageConfig, train_embedding
from recsys.data.dataset import build_dataset
from recsys.data.schema import PositiveRule
from recsys.errors import DataError

N_CLUSTERS, PER_CLUSTER, DV = 8, 20, 24


@pytest.fixture(scope="module")
def vector_world():
    """Items in clusters with a clustered vec_audio only (on top of a large common offset that every item
    shares, as raw embedding vectors often have); users engage items of one cluster in sequence."""
    rng = np.random.default_rng(0)
    n = N_CLUSTERS * PER_CLUSTER
    cluster = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    item_ids = np.arange(5000, 5000 + n, dtype=np.int64)
    vectors = (20.0 + 3.0 * rng.normal(size=(N_CLUSTERS, DV))[cluster] + rng.normal(size=(n, DV))).astype(np.float32)
    items = pd.DataFrame({"item_id": item_ids, "created_at": pd.Timestamp("2023-01-01", tz="UTC"),
                          "vec_audio": list(vectors)})
    rows = []
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    for u in range(80):
        seq = rng.choice(np.flatnonzero(cluster == rng.integers(N_CLUSTERS)), 10, replace=False)
        start = t0 + pd.Timedelta(days=int(rng.integers(0, 60)))
        rows += [(u, item_ids[i], start + pd.Timedelta(hours=k), 1.0) for k, i in enumerate(seq)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "like"])
    ds = build_dataset(name="vectors", source="test", items=items, interactions=inter, labels={"like": "like"},
                       positive=PositiveRule("like", 1.0), split=(0.1, 0.1))
    no_text = TextTokens(np.zeros((n, 1, 16), np.float16), np.full((n, 1), -1, np.int8))
    enc = EncodedItems(item_ids=item_ids, text=no_text,
                       audio_kind="embedding", pooled_text=np.zeros((n, 16), np.float32),
                       precomputed={"audio": vectors})
    return ds, enc, cluster


def _cfg(**kw) -> EmbeddingTrainConfig:
    model = OmniEmbeddingConfig(hidden=32, layers=1, heads=2, n_latents=4, embed_dim=32, matryoshka_dims=[8, 16])
    base = dict(model=model, stages=[StageConfig(steps=40)], lr=3e-3, warmup_steps=5, checkpoint_every=1000,
                batch_size=32, eval_max_queries=50)
    return EmbeddingTrainConfig(**{**base, **kw})


def test_vector_only_items_get_real_embeddings_and_sids(vector_world, tmp_path, caplog):
    ds, enc, cluster = vector_world
    res = train_embedding(ds, enc, _cfg(), tmp_path, "cpu")
    assert res.metrics["train/loss_vs_chance/i2i"] < 0.9, res.metrics  # training left chance
    model = OmniEmbeddingModel.from_pretrained(res.model_dir)
    emb = embed_items(model, enc, device="cpu")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # no zero vector
    assert np.linalg.norm(emb - emb.mean(0), axis=1).max() > 0.5  # not constant
    sids = ResidualKMeans(levels=2, codebook_size=8).fit(emb).encode(emb)
    assert len(np.unique(sids[:, 0])) > 1 and len(np.unique(sids, axis=0)) > N_CLUSTERS
    # nearest neighbour by embedding shares the item's vector cluster far above chance (19 / 159)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    agree = float((cluster[sim.argmax(1)] == cluster).mean())
    assert agree > 0.8, agree
    write_item_embeddings(ds, enc.item_ids, emb, sids, "v", tmp_path / "emb.parquet")  # passes the guards
    assert not [r for r in caplog.records if "never left chance" in r.getMessage()]


def test_without_the_precomputed_path_the_embeddings_are_zero_and_refused(vector_world, tmp_path):
    """What the residual path fixes: with it off, an untrained vector-only model embeds every item as zero
    (zero-initialised head), and the table is refused naming the cause instead of being written."""
    ds, enc, _ = vector_world
    cfg = _cfg().model.model_copy(update={"precomputed_residual": False}).with_inputs(enc)
    emb = embed_items(OmniEmbeddingModel(cfg), enc, device="cpu")
    assert np.abs(emb).max() == 0
    with pytest.raises(DataError, match="every one of the 160 item embeddings is zero"):
        write_item_embeddings(ds, enc.item_ids, emb, None, "v", tmp_path / "emb.parquet")
    assert not (tmp_path / "emb.parquet").exists()
    # with the path, the untrained model already keeps the vectors' neighbourhoods
    on = OmniEmbeddingModel(_cfg().model.with_inputs(enc))
    on.fit_precomputed_scaling(enc.precomputed)
    assert np.linalg.norm(embed_items(on, enc, device="cpu"), axis=1).min() > 0.99


def test_same_config_and_seed_give_bit_identical_weights_and_table(vector_world, tmp_path):
    ds, enc, _ = vector_world
    cfg = _cfg(stages=[StageConfig(steps=8)])
    assert cfg.num_threads == 1  # a fixed thread count by default (not every core)
    tables = []
    for run in ("a", "b"):
        res = train_embedding(ds, enc, cfg, tmp_path / run, "cpu")
        model = OmniEmbeddingModel.from_pretrained(res.model_dir)
        emb = embed_items(model, enc, device="cpu")
        sids = ResidualKMeans(levels=2, codebook_size=8).fit(emb).encode(emb)
        tables.append(pd.read_parquet(write_item_embeddings(ds, enc.item_ids, emb, sids, "v",
                                                            tmp_path / run / "emb.parquet")))
    a = OmniEmbeddingModel.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = OmniEmbeddingModel.from_pretrained(tmp_path / "b" / "model").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
    assert not torch.are_deterministic_algorithms_enabled()  # the trainer restored the caller's setting
