"""Batch inference (items, texts) and the item-embeddings table (schema, checks, atomic write)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from embedding.batches import collate
from embedding.encoders.types import EncodedItems
from embedding.infer import embed_items, embed_texts, pool_text_tokens, write_item_embeddings
from embedding.semantic_ids import ResidualKMeans
from recsys.data.dataset import build_dataset
from recsys.data.schema import PositiveRule


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
