"""Contrastive losses: InfoNCE (temperatures, masks), Matryoshka prefixes, distillation through a head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from embedding.batches import collate
from embedding.cre.heads import ProjectionHead
from embedding.losses import DistillationLoss, InfoNCELoss, MatryoshkaLoss


def test_infonce_decreases_on_easy_problem():
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    q_net, t_net = torch.nn.Linear(8, 16), torch.nn.Linear(8, 16)
    loss = InfoNCELoss(keys=["a", "b"], temperature={"a": 0.1, "b": 0.5}, symmetric=True)
    assert math.isclose(loss.temperature("b").item(), 0.5, rel_tol=1e-6)
    opt = torch.optim.Adam([*q_net.parameters(), *t_net.parameters(), *loss.parameters()], lr=1e-2)
    losses = []
    for _ in range(60):
        value = loss.compute_loss_from_embeddings([F.normalize(q_net(x), dim=-1), F.normalize(t_net(x), dim=-1)],
                                                  key="a")
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
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
