"""TorchRec pieces of the DLRM (ranking/dlrm_model.py): KJT layout, tables, batched inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from ranking.dlrm_model import build_dlrm, build_kjt, build_tables, make_batch, model_logits


def test_kjt_batch_layout():
    keys = ["user_id", "item_id", "sid_0"]
    ids = torch.tensor([[1, 10, 100], [2, 20, 200], [3, 30, 300], [4, 40, 400]])
    kjt = build_kjt(ids, keys)
    assert isinstance(kjt, KeyedJaggedTensor)
    assert kjt.keys() == keys
    assert kjt.lengths().tolist() == [1] * 12
    assert kjt.stride() == 4
    assert kjt.values().tolist() == [1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 300, 400]  # key-major
    assert kjt["item_id"].values().tolist() == [10, 20, 30, 40]
    batch = make_batch(torch.zeros(4, 5), ids, keys, torch.ones(4))
    assert batch.dense_features.shape == (4, 5) and batch.labels.tolist() == [1.0] * 4
    tables = build_tables({"user_id": 5, "item_id": 50, "sid_0": 500}, embedding_dim=8)
    assert [t.name for t in tables] == ["t_user_id", "t_item_id", "t_sid_0"]
    pooled = EmbeddingBagCollection(tables=tables)(kjt)
    assert isinstance(pooled, KeyedTensor) and pooled.keys() == keys
    assert pooled["item_id"].shape == (4, 8)
    with pytest.raises(ValueError):
        build_kjt(ids, keys[:2])


def test_batched_logits_equal_one_forward_and_keep_the_mode():
    torch.manual_seed(0)
    keys = ["a", "b"]
    model = build_dlrm(build_tables({"a": 7, "b": 3}, 4), 5, [8, 4], [8, 1], torch.device("cpu"))
    dense, ids = torch.randn(10, 5), torch.stack([torch.arange(10) % 7, torch.arange(10) % 3], 1)
    model.train()
    batched = model_logits(model, dense, ids, keys, batch_size=3, device=torch.device("cpu"))
    assert model.training                                           # mode restored
    model.eval()
    with torch.no_grad():
        whole = model(dense, build_kjt(ids, keys)).squeeze(-1).double().numpy()
    assert batched.shape == (10,) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, whole, rtol=1e-6)
    assert model_logits(model, dense[:0], ids[:0], keys, 3, torch.device("cpu")).shape == (0,)
