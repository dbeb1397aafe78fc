"""The DLRM training loop: BCE through ``DLRMTrain``, Adam, seeded shuffling and id dropout, early stopping.

- BCE-with-logits without ``pos_weight``: re-weighting positives shifts the logits away from the true log-odds
  (calibration would have to undo it) and does not help AUC.
- Adam over all parameters; weight decay on the dense (MLP) parameters only. The tables are small, so dense
  embedding gradients are fine in a single process.
- Each epoch reshuffles the rows and replaces each id by the unknown row 0 with probability ``id_dropout``, so
  row 0 learns an "unknown id" embedding (new ids at test time get it instead of a random initialisation). Both
  draw from a CPU generator seeded with ``seed``: the loop is deterministic and leaves global random state alone.
- Early stopping: with a holdout, training stops after ``patience`` epochs without a holdout log-loss gain and
  the best epoch's weights are restored; without one, all ``epochs`` run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit
from torchrec.models.dlrm import DLRM, DLRMTrain
from tqdm.auto import tqdm

from ranking.dlrm_model import make_batch, model_logits
from ranking.metrics import auc, logloss

MIN_IMPROVEMENT = 1e-5
"""Holdout log-loss gains below this do not count as progress for early stopping."""


@dataclass
class DLRMInputs:
    """Model inputs of a set of rows: dense [N, n_dense] float32, table rows [N, F] int64, labels [N] 0/1."""

    dense: torch.Tensor
    ids: torch.Tensor
    labels: np.ndarray

    def rows(self, mask: np.ndarray) -> DLRMInputs:
        index = torch.from_numpy(np.asarray(mask))
        return DLRMInputs(self.dense[index], self.ids[index], self.labels[mask])


class EarlyStopping:
    """Keeps the weights of the best epoch by holdout loss; says when `patience` epochs brought no gain."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss, self.best_epoch, self.bad_epochs = float("inf"), 0, 0
        self.best_state: dict | None = None

    def update(self, model: torch.nn.Module, epoch: int, loss: float) -> bool:
        """Record the epoch's holdout loss; True when training should stop."""
        if loss < self.best_loss - MIN_IMPROVEMENT:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class TrainedDLRM:
    model: DLRM
    best_epoch: int                         # the holdout's best epoch, or the last one without a holdout
    history: list[dict[str, float]]         # per epoch: train_loss (+ holdout_loss, holdout_auc)


def holdout_scores(model: DLRM, data: DLRMInputs, keys: Sequence[str], batch_size: int,
                   device: torch.device) -> dict[str, float]:
    logits = model_logits(model, data.dense, data.ids, keys, batch_size, device)
    return {"holdout_loss": logloss(data.labels, expit(logits)), "holdout_auc": auc(data.labels, logits)}


def train_dlrm(model: DLRM, keys: Sequence[str], fit: DLRMInputs, holdout: DLRMInputs | None, *, epochs: int,
               batch_size: int, lr: float, weight_decay: float, id_dropout: float, patience: int, seed: int,
               predict_batch_size: int, device: torch.device) -> TrainedDLRM:
    """Train `model` (freshly built) on `fit`; early stopping on `holdout` when given. The model ends in eval mode."""
    train_module = DLRMTrain(model).to(device)
    emb_params = list(model.sparse_arch.parameters())
    emb_ids = {id(p) for p in emb_params}
    mlp_params = [p for p in model.parameters() if id(p) not in emb_ids]
    opt = torch.optim.Adam([{"params": mlp_params, "weight_decay": weight_decay},
                            {"params": emb_params, "weight_decay": 0.0}], lr=lr)
    X_dense, X_ids = fit.dense.to(device), fit.ids.to(device)
    Y = torch.from_numpy(fit.labels.astype(np.float32)).to(device)
    gen = torch.Generator().manual_seed(seed)
    n = int(X_dense.shape[0])
    stopping = EarlyStopping(patience)
    history: list[dict[str, float]] = []
    for epoch in tqdm(range(1, epochs + 1), desc="dlrm epochs", disable=None, leave=False):
        train_module.train()
        perm = torch.randperm(n, generator=gen)
        drop = (torch.rand((n, X_ids.shape[1]), generator=gen) < id_dropout) if id_dropout else None
        total = 0.0
        for start in range(0, n, batch_size):
            idx_cpu = perm[start:start + batch_size]
            idx = idx_cpu.to(device)
            ids = X_ids[idx]
            if drop is not None:
                ids = ids.masked_fill(drop[idx_cpu].to(device), 0)
            loss, _ = train_module(make_batch(X_dense[idx], ids, keys, Y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx_cpu)
        row = {"epoch": epoch, "train_loss": total / max(n, 1)}
        stop = False
        if holdout is not None:
            row.update(holdout_scores(model, holdout, keys, predict_batch_size, device))
            stop = stopping.update(model, epoch, row["holdout_loss"])
        history.append(row)
        if stop:
            break
    stopping.restore(model)
    model.eval()
    best = stopping.best_epoch if holdout is not None and stopping.best_state is not None else len(history)
    return TrainedDLRM(model, best, history)
