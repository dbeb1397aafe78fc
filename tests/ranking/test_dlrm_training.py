"""The DLRM training loop (ranking/dlrm_training.py): early stopping, determinism, no holdout."""

from __future__ import annotations

import numpy as np
import torch

from ranking.dlrm_model import build_dlrm, build_tables
from ranking.dlrm_training import DLRMInputs, EarlyStopping, train_dlrm
from recsys.runtime import seeded

CPU = torch.device("cpu")


def data(n: int, seed: int) -> DLRMInputs:
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(n, 3, generator=g)
    ids = torch.randint(1, 20, (n, 1), generator=g)
    logit = 2 * dense[:, 0] + (ids[:, 0] % 2).float() - 0.5
    labels = (torch.rand(n, generator=g) < torch.sigmoid(logit)).numpy().astype(np.float64)
    return DLRMInputs(dense, ids, labels)


def model():
    with seeded(0):
        return build_dlrm(build_tables({"x": 20}, 4), 3, [8, 4], [8, 1], CPU)


def train(fit, holdout, **kw):
    args = dict(epochs=6, batch_size=64, lr=1e-2, weight_decay=0.0, id_dropout=0.1, patience=2, seed=0,
                predict_batch_size=256, device=CPU)
    return train_dlrm(model(), ["x"], fit, holdout, **{**args, **kw})


def test_early_stopping_keeps_the_best_epoch():
    stop = EarlyStopping(patience=2)
    net = torch.nn.Linear(1, 1)
    assert not stop.update(net, 1, 0.5)
    best = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not stop.update(net, 2, 0.6)            # worse: one bad epoch
    assert stop.update(net, 3, 0.5 - 1e-7)         # no real gain: second bad epoch -> stop
    stop.restore(net)
    assert stop.best_epoch == 1 and torch.equal(net.weight, best["weight"])


def test_train_is_deterministic_and_learns():
    fit, hold = data(2000, 1), data(500, 2)
    a, b = train(fit, hold), train(fit, hold)
    assert a.history == b.history and 1 <= a.best_epoch <= len(a.history)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert a.history[-1]["holdout_auc"] > 0.75 and not a.model.training
    assert min(r["holdout_loss"] for r in a.history) == a.history[a.best_epoch - 1]["holdout_loss"]
    other = train(fit, hold, seed=1)
    assert other.history != a.history


def test_without_holdout_every_epoch_runs():
    result = train(data(500, 3), None, epochs=3)
    assert result.best_epoch == 3 and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert "holdout_loss" not in result.history[0]
