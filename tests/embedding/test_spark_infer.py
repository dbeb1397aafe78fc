"""Batch inference and semantic-ID assignment as Spark jobs (embedding.spark_infer, local[2]) give exactly the
one-process arrays: several shards (the last one partial), every modality, a Matryoshka prefix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedding.encoders.types import load_encoded, save_encoded
from embedding.infer import embed_items
from embedding.model import OmniEmbeddingModel
from embedding.semantic_ids import ResidualKMeans
from embedding.spark_infer import SHARD_BATCHES, spark_embed_items, spark_semantic_ids

pytestmark = pytest.mark.spark



def test_encoded_items_round_trip(make_encoded, tmp_path):
    enc = make_encoded(n=30)
    save_encoded(enc, tmp_path / "enc.npz")
    back = load_encoded(tmp_path / "enc.npz")
    for name in ("item_ids", "pooled_text", "image", "image_mask", "audio", "audio_mask"):
        a, b = getattr(enc, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert np.array_equal(enc.text.tokens, back.text.tokens) and np.array_equal(enc.text.field, back.text.field)
    assert back.audio_kind == enc.audio_kind and list(back.precomputed) == ["clip"]
    np.testing.assert_array_equal(back.precomputed["clip"], enc.precomputed["clip"])  # NaN = missing kept
    rows = np.array([5, 0, 29])
    assert np.array_equal(enc.take(rows).item_ids, enc.item_ids[rows])


@pytest.mark.parametrize("shape", ["omni", "movielens"])
def test_spark_inference_and_semantic_ids_equal_the_local_path(spark, tiny_config, make_encoded, tmp_path, shape):
    """omni: text, images, audio and a precomputed vector; movielens: text and one poster, nothing else."""
    enc = make_encoded(n=300, seed=3) if shape == "omni" else make_encoded(n=300, seed=4, audio=False, pre=False,
                                                                             frames=1)
    batch = 8
    assert len(enc) > 2 * batch * SHARD_BATCHES and len(enc) % (batch * SHARD_BATCHES)  # 3 shards, one partial
    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_config(enc)).eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # as after training: the fusion path shows in the outputs
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    for dim in (None, 16):
        local = embed_items(model, enc, batch_size=batch, device="cpu", dim=dim)
        got = spark_embed_items(spark, model_dir, enc, tmp_path / "shards", batch_size=batch, device="cpu", dim=dim)
        assert got.dtype == np.float32 and got.shape == local.shape
        assert np.array_equal(got, local), np.abs(got - local).max()
    assert not (tmp_path / "shards").exists()  # the shards are scratch
    quantiser = ResidualKMeans(levels=3, codebook_size=8).fit(local)
    codes = spark_semantic_ids(spark, quantiser, local, partitions=3)
    assert np.array_equal(codes, quantiser.encode(local)) and len(np.unique(codes[:, 0])) > 1
