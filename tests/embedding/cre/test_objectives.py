"""What a CRE step optimises: the history query (mean of history embeddings, bank for non-live slots)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedding.cre.objectives import history_query
from embedding.infer import embed_items
from embedding.model import OmniEmbeddingModel


def test_history_query_is_mean_of_history_embeddings(cre_world, tiny_model_cfg):
    enc = cre_world.enc
    torch.manual_seed(0)
    model = OmniEmbeddingModel(tiny_model_cfg).eval()
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
