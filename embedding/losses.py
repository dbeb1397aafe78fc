"""Contrastive losses as small composable modules (sentence-transformers style).

Every loss has the same contract:

- `forward(features, labels=None, key=...)` only embeds: `features` is a list of `(batch, role, task)` tuples
  (query side first), embedded with `self.model`; the maths lives in
- `compute_loss_from_embeddings(embeddings, labels=None, key=...)`, reusable on cached or truncated embeddings;
- `get_config_dict()` for logging.

Wrappers (MatryoshkaLoss) take another loss and call its `compute_loss_from_embeddings` on every prefix.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

Features = Sequence[tuple[dict[str, Tensor], str, str]]  # (batch, role, task) per side


def _embed(model: nn.Module | None, features: Features) -> list[Tensor]:
    if model is None:
        raise ValueError("this loss was built without a model; call compute_loss_from_embeddings instead")
    return [model(batch, role=role, task=task).embedding for batch, role, task in features]


class InfoNCELoss(nn.Module):
    """InfoNCE with in-batch negatives and a learnable temperature per dataset/task key (SAIL §3.3.2).

    For query i, the positive is target i and every other target in the batch is a negative:
    ``loss = CE(cos(q_i, t_j) / tau_key, j = i)``, optionally averaged with the target -> query direction.

    Args:
        model: the embedding model (only needed for `forward`).
        keys: the dataset/task keys that get their own temperature (e.g. ["i2i", "q2i", "label"]).
        temperature: initial tau for every key (scale = 1 / tau); a float, or a dict key -> tau.
        learnable: learn log(tau) per key; otherwise fixed.
        symmetric: also score targets against queries (both sides are items in i2i).
        min_temperature: lower clamp of tau (scale at most 1 / min_temperature).

    Labels (optional): LongTensor [B, 2] of (query id, target id). Column j is **not** used as a negative of
    row i when it shares the query or the target id (or the query id equals the target id: the same item on
    both sides), so duplicate items or labels in a batch are not pushed apart. Give query texts ids that cannot
    collide with item ids (e.g. negative ones).

    `positives` (optional): BoolTensor [B, B], True where (query i, target j) is a known positive pair (e.g. a
    multi-label item and another of its labels in the batch): also not used as a negative, in either direction.
    Without it, an item with labels A and B paired with A would be pushed away from B whenever B is another
    row's target: a false negative that teaches one label per item.

    Hard negatives (optional, SAIL §3.1.2): a third embedding [M, D] of extra targets, negatives of every query
    (query -> target direction only), with `negative_ids` [M] so that one equal to a row's query or target id is
    masked for that row; `positives` is then [B, B + M].

    Inputs:
        +---------------------------------------------------+-------------------------------+
        | embeddings                                        | labels                        |
        +===================================================+===============================+
        | [query [B, D], target [B, D] (, negatives [M, D])] | None or [B, 2] (qid, tid)     |
        +---------------------------------------------------+-------------------------------+
    """

    def __init__(self, model: nn.Module | None = None, keys: Iterable[str] = ("default",),
                 temperature: float | dict[str, float] = 0.05, learnable: bool = True, symmetric: bool = False,
                 min_temperature: float = 0.01) -> None:
        super().__init__()
        keys = list(keys)
        if not keys:
            raise ValueError("InfoNCELoss needs at least one key")
        init = temperature if isinstance(temperature, dict) else {k: temperature for k in keys}
        bad = {k: t for k, t in init.items() if not t > 0}
        if bad or set(init) != set(keys):
            raise ValueError(f"temperatures must be > 0 and given for every key {keys}; got {init}")
        self.model = model
        self.symmetric, self.learnable, self.min_temperature = symmetric, learnable, min_temperature
        self.init_temperature = dict(init)
        self.log_temperature = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(math.log(init[k])), requires_grad=learnable) for k in keys})

    def temperature(self, key: str) -> Tensor:
        if key not in self.log_temperature:
            raise KeyError(f"no temperature for key {key!r}; known keys {list(self.log_temperature)}")
        return self.log_temperature[key].exp().clamp(min=self.min_temperature)

    def forward(self, features: Features, labels: Tensor | None = None, key: str = "default",
                positives: Tensor | None = None, negative_ids: Tensor | None = None) -> Tensor:
        return self.compute_loss_from_embeddings(_embed(self.model, features), labels, key, positives, negative_ids)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None,
                                     key: str = "default", positives: Tensor | None = None,
                                     negative_ids: Tensor | None = None) -> Tensor:
        q, t = embeddings[0], embeddings[1]  # (B, D) each, L2-normalised
        b = len(q)
        candidates = torch.cat([t, embeddings[2]]) if len(embeddings) > 2 else t
        logits = q @ candidates.T / self.temperature(key)  # (B, B + M)
        same = None
        if labels is not None:
            qid, tid = labels[:, 0], labels[:, 1]
            same = ((qid[:, None] == qid[None]) | (tid[:, None] == tid[None]) | (qid[:, None] == tid[None])
                    | (tid[:, None] == qid[None]))
            if len(candidates) > b:
                if negative_ids is None or len(negative_ids) != len(candidates) - b:
                    raise ValueError("hard negatives need negative_ids, one per negative, to be masked by id")
                same = torch.cat([same, (qid[:, None] == negative_ids[None]) | (tid[:, None] == negative_ids[None])],
                                 dim=1)
        if positives is not None:
            if positives.shape != logits.shape:
                raise ValueError(f"positives mask {tuple(positives.shape)} must be [B, B + M] = "
                                 f"{tuple(logits.shape)}")
            same = positives.bool() if same is None else same | positives.bool()
        if same is not None:
            same = same.clone()
            same.fill_diagonal_(False)  # the (i, i) entries of the in-batch block: each row's own positive
            logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(b, device=q.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits[:, :b].T, target)) / 2
        return loss

    def get_config_dict(self) -> dict:
        return {"temperature": {k: round(self.temperature(k).item(), 5) for k in self.log_temperature},
                "learnable": self.learnable, "symmetric": self.symmetric, "min_temperature": self.min_temperature}


class CoSENTLoss(nn.Module):
    """CoSENT for pairs with graded similarity scores (SAIL §2; Su 2022; sentence-transformers' CoSENTLoss):
    ``log(1 + sum_{score_i > score_j} exp(scale * (cos_j - cos_i)))`` over the batch's pairs: every pair scored
    higher must have the higher cosine. Only the order of the scores matters.

    Inputs:
        +---------------------------------+-------------------------------+
        | embeddings                      | labels                        |
        +=================================+===============================+
        | [left [B, D], right [B, D]]     | graded scores [B] (float)     |
        +---------------------------------+-------------------------------+
    """

    def __init__(self, model: nn.Module | None = None, scale: float = 20.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"CoSENT scale must be > 0, got {scale}")
        self.model, self.scale = model, scale

    def forward(self, features: Features, labels: Tensor, **kw) -> Tensor:
        return self.compute_loss_from_embeddings(_embed(self.model, features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor, **kw) -> Tensor:
        cos = F.cosine_similarity(embeddings[0], embeddings[1], dim=-1) * self.scale  # (B,)
        diff = cos[None, :] - cos[:, None]  # [i, j] = cos_j - cos_i
        higher = labels[:, None] > labels[None, :]  # score_i > score_j
        terms = diff[higher]
        return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)

    def get_config_dict(self) -> dict:
        return {"scale": self.scale}


class MatryoshkaLoss(nn.Module):
    """Apply a base loss to several L2-normalised prefixes of the embeddings and sum (weighted).

    SAIL: ``L = L_nce(z[:128]) + L_nce(z[:768]) + L_nce(z[:1536])``, equal weights.

    Args:
        base_loss: any loss with `compute_loss_from_embeddings(embeddings, labels, **kw)`.
        dims: prefix sizes, e.g. [64, 128, 256] (the last is normally the full size).
        weights: one weight per dim; default 1 each (a plain sum, as in SAIL and sentence-transformers).
    """

    def __init__(self, base_loss: nn.Module, dims: Sequence[int], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        dims = list(dims)
        weights = [1.0] * len(dims) if weights is None else list(weights)
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"Matryoshka dims must be positive, got {dims}")
        if len(weights) != len(dims):
            raise ValueError(f"Matryoshka weights {weights} must match dims {dims} in length")
        self.base_loss, self.dims, self.weights = base_loss, dims, weights
        self.model = getattr(base_loss, "model", None)

    def forward(self, features: Features, labels: Tensor | None = None, **kw) -> Tensor:
        return self.compute_loss_from_embeddings(_embed(self.model, features), labels, **kw)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None,
                                     **kw) -> Tensor:
        full = embeddings[0].shape[-1]
        if max(self.dims) > full:
            raise ValueError(f"Matryoshka dim {max(self.dims)} exceeds the embedding size {full}")
        total = embeddings[0].new_zeros(())
        for d, w in zip(self.dims, self.weights):
            prefix = [F.normalize(e[..., :d], dim=-1) for e in embeddings]
            total = total + w * self.base_loss.compute_loss_from_embeddings(prefix, labels, **kw)
        return total

    def get_config_dict(self) -> dict:
        return {"base_loss": type(self.base_loss).__name__, "dims": self.dims, "weights": self.weights,
                **{f"base.{k}": v for k, v in self.base_loss.get_config_dict().items()}}


class DistillationLoss(nn.Module):
    """Feature distillation onto a teacher's vectors through a projection head (SAIL §3.3.5, ID2item).

    The paper leaves the loss form open; ours is cosine distance + in-batch contrastive:
    ``loss = w_cos * mean(1 - cos(p_i, t_i)) + w_nce * InfoNCE(p, t)`` with ``p = normalize(head(student))``.
    The cosine term pulls every projected vector onto its own teacher vector (absolute position); the InfoNCE term
    (in-batch negatives, both directions) makes it closer to its own teacher vector than to the other items' ones
    (relative geometry: teacher neighbourhoods), which the cosine term alone does not enforce.

    Args:
        model: the embedding model (only needed for `forward`).
        head: maps the student embedding [B, D] to the teacher space [B, Dt] (e.g. ProjectionHead).
        cosine_weight / contrastive_weight: weights of the two terms (>= 0, not both 0).
        temperature: initial InfoNCE temperature (learnable when `learnable`).

    Inputs:
        +---------------------------------+------------------------------------------+
        | embeddings                      | labels                                   |
        +=================================+==========================================+
        | [student [B, D]]                | teacher vectors [B, Dt] (L2-normalised)  |
        +---------------------------------+------------------------------------------+
    """

    def __init__(self, model: nn.Module | None = None, head: nn.Module | None = None, cosine_weight: float = 1.0,
                 contrastive_weight: float = 1.0, temperature: float = 0.05, learnable: bool = True) -> None:
        super().__init__()
        if head is None:
            raise ValueError("DistillationLoss needs a projection head")
        if cosine_weight < 0 or contrastive_weight < 0 or cosine_weight + contrastive_weight <= 0:
            raise ValueError(f"distillation weights must be >= 0 and not both 0, got cosine={cosine_weight}, "
                             f"contrastive={contrastive_weight}")
        self.model, self.head = model, head
        self.cosine_weight, self.contrastive_weight = cosine_weight, contrastive_weight
        self.nce = InfoNCELoss(None, keys=["default"], temperature=temperature, learnable=learnable, symmetric=True)
        self.last: dict[str, float] = {}  # the two terms of the last call (for logging)

    def forward(self, features: Features, labels: Tensor, **kw) -> Tensor:
        return self.compute_loss_from_embeddings(_embed(self.model, features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor, **kw) -> Tensor:
        p = F.normalize(self.head(embeddings[0]), dim=-1)  # (B, Dt)
        t = F.normalize(labels.to(p.dtype), dim=-1)  # (B, Dt)
        if p.shape != t.shape:
            raise ValueError(f"projected student {tuple(p.shape)} and teacher {tuple(t.shape)} shapes differ")
        cos = (1.0 - (p * t).sum(-1)).mean()
        nce = self.nce.compute_loss_from_embeddings([p, t]) if len(p) > 1 else p.new_zeros(())
        self.last = {"cosine": float(cos.detach()), "contrastive": float(nce.detach())}
        return self.cosine_weight * cos + self.contrastive_weight * nce

    def get_config_dict(self) -> dict:
        return {"cosine_weight": self.cosine_weight, "contrastive_weight": self.contrastive_weight,
                **{f"nce.{k}": v for k, v in self.nce.get_config_dict().items()}}
