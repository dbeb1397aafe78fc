"""What a CRE step optimises, given its batch: the seq2item loss (stage 1) and the ID2item loss (stage 2).

    seq2item   Matryoshka InfoNCE(query = mean of <= history_len history embeddings -> next item), one learnable
               temperature per sequence kind (only the batch's kind is scored)
    id2item    per teacher: DistillationLoss(head(student item embedding), teacher vector), over the batch's items
               in that teacher's vocabulary; + aux i2i Matryoshka InfoNCE on co-engagement pairs (optional)
    both       content anchor: weight * mean(1 - cos(item embedding, its content-model embedding))

Stage 2 also adds the seq2item loss of a second batch (multi-task, `id2item_seq2item_weight`); the loop does that.
The losses' temperatures and the projection heads (inside the distillation losses) are parameters of
`CREObjectives`, so its `state_dict()` is what a checkpoint needs besides the model and the optimizer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from embedding.cre.config import CREConfig
from embedding.cre.data import CREData
from embedding.cre.embedder import ItemEmbedder
from embedding.cre.samplers import DistillBatch, SequenceBatch
from embedding.cre.sequences import SEQUENCE_KINDS
from embedding.infer import ITEM_ROLE
from embedding.losses import DistillationLoss, InfoNCELoss, MatryoshkaLoss


def history_query(emb: Tensor, rows: np.ndarray, hist: np.ndarray, live: np.ndarray,
                  bank: Tensor | None) -> Tensor:
    """Seq2item queries: the mean of the history items' embeddings (SAIL's default query) -> [B, D].

    emb [U, D]: embeddings (with gradients) of the sorted unique item rows `rows`; hist [B, L]: history item rows,
    -1 = padding; live [B, L]: history slots taken from `emb` (each live row must be in `rows`); the other valid
    slots are read from `bank` [N, D] (no gradient; required unless every valid slot is live)."""
    valid = hist >= 0  # (B, L)
    if (live & ~valid).any():
        raise ValueError("live history slots must be valid (not padding)")
    if not valid.any(1).all():
        raise ValueError("every sequence needs at least one history item")
    dev = emb.device
    h = emb[torch.as_tensor(np.searchsorted(rows, np.where(live, hist, rows[0])), device=dev)]  # (B, L, D)
    if (valid & ~live).any():
        if bank is None:
            raise ValueError("history slots that are not live need the item bank")
        h = torch.where(torch.as_tensor(live, device=dev)[..., None], h,
                        bank[torch.as_tensor(np.maximum(hist, 0), device=dev)].to(h.dtype))
    w = torch.as_tensor(valid, device=dev, dtype=h.dtype)[..., None]  # (B, L, 1)
    return (h * w).sum(1) / w.sum(1)  # (B, D)


class CREObjectives(nn.Module):
    """The losses of both stages over one run's data (see the module docstring)."""

    def __init__(self, cfg: CREConfig, heads: nn.ModuleDict, dims: list[int], data: CREData,
                 device: torch.device) -> None:
        super().__init__()
        self.cfg, self.data, self.device = cfg, data, device
        self.seq2item_loss = MatryoshkaLoss(InfoNCELoss(None, keys=list(SEQUENCE_KINDS), temperature=cfg.temperature,
                                                        symmetric=False), dims)
        self.aux_i2i_loss = MatryoshkaLoss(InfoNCELoss(None, keys=["i2i"], temperature=cfg.temperature,
                                                       symmetric=True), dims)
        self.distill = nn.ModuleDict({name: DistillationLoss(None, head, cfg.distill_cosine_weight,
                                                             cfg.distill_contrastive_weight, cfg.distill_temperature)
                                      for name, head in heads.items()})
        self.base = torch.as_tensor(data.base_vectors, device=device)  # (N, D), not a parameter
        self.to(device)

    @property
    def temperatures(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if "log_temperature" in n]

    def _at(self, rows: np.ndarray, which: np.ndarray) -> Tensor:
        """Positions of `which` in the sorted unique `rows`."""
        return torch.as_tensor(np.searchsorted(rows, which), device=self.device)

    def content_anchor(self, emb: Tensor, rows: np.ndarray) -> tuple[Tensor, dict]:
        """1 - cos(each item's embedding, its content-model embedding): 0 until CRE moves the item."""
        if self.cfg.content_anchor_weight <= 0:
            return emb.new_zeros(()), {}
        l_a = (1.0 - (emb * self.base[torch.as_tensor(rows, device=self.device)]).sum(-1)).mean()
        return self.cfg.content_anchor_weight * l_a, {"anchor": float(l_a.detach())}

    def seq2item(self, batch: SequenceBatch, embed: ItemEmbedder, bank: Tensor | None) -> tuple[Tensor, dict]:
        rows = batch.rows
        emb = embed(rows, ITEM_ROLE)  # (U, D)
        query = history_query(emb, rows, batch.history, batch.live, bank)  # (B, D)
        target = emb[self._at(rows, batch.target)]  # (B, D)
        # in-batch duplicates: examples are distinct queries, equal target items are not each other's negatives
        labels = torch.as_tensor(np.stack([-(batch.index + 1), self.data.item_ids[batch.target]], 1),
                                 device=self.device)
        loss = self.seq2item_loss.compute_loss_from_embeddings([query, target], labels, key=batch.kind)
        l_a, parts = self.content_anchor(emb, rows)
        return loss + l_a, {"dataset": f"seq2item_{batch.kind}", "items_embedded": int(len(rows)), **parts}

    def id2item(self, batch: DistillBatch, embed: ItemEmbedder) -> tuple[Tensor, dict]:
        rows = batch.target_rows
        emb = embed(rows, ITEM_ROLE)  # (U, D): the table's vectors
        student = emb[self._at(rows, batch.rows)]  # (B, D)
        loss, parts = emb.new_zeros(()), {}
        for name, teacher in self.data.teachers.items():
            m = teacher.in_vocab[batch.rows]
            if m.sum() < 2:
                continue
            crit = self.distill[name]
            l_t = crit.compute_loss_from_embeddings([student[torch.as_tensor(m, device=self.device)]],
                                                    teacher.vectors[torch.as_tensor(batch.rows[m], device=self.device)])
            loss = loss + self.cfg.teacher_weights.get(name, 1.0) * l_t
            parts.update({f"distill_{name}/{k}": v for k, v in crit.last.items()})
        if len(batch.aux_query):
            q = embed(batch.aux_query, "query")  # (A, D)
            ids = self.data.item_ids
            labels = torch.as_tensor(np.stack([ids[batch.aux_query], ids[batch.aux_target]], 1), device=self.device)
            l_aux = self.aux_i2i_loss.compute_loss_from_embeddings([q, emb[self._at(rows, batch.aux_target)]],
                                                                   labels, key="i2i")
            loss = loss + self.cfg.aux_i2i_weight * l_aux
            parts["aux_i2i"] = float(l_aux.detach())
        l_a, a_parts = self.content_anchor(emb, rows)
        return loss + l_a, {"dataset": "id2item", **parts, **a_parts}

    def get_config_dict(self) -> dict:
        return {"seq2item": self.seq2item_loss.get_config_dict(), "aux_i2i": self.aux_i2i_loss.get_config_dict(),
                **{name: d.get_config_dict() for name, d in self.distill.items()}}


__all__ = ["CREObjectives", "history_query"]
