"""ID-to-item teacher: a two-tower retrieval model over user-ID and item-ID tables.

KJT in, KeyedTensor out: the tables are one `EmbeddingBagCollection` declared by `two_tower_tables`; the towers
read the pooled output by feature name. No sharding here: `embedding.teachers.train` wraps `TwoTowerTrain` (which
owns the loss) in DistributedModelParallel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

USER_FEATURE = "user_id"
ITEM_FEATURE = "item_id"
NEG_FEATURE = "neg_item_id"
FEATURES = (USER_FEATURE, ITEM_FEATURE, NEG_FEATURE)


def two_tower_tables(num_users: int, num_items: int, dim: int) -> list[EmbeddingBagConfig]:
    """Table "user" (feature user_id) and table "item" (features item_id and neg_item_id, shared rows).

    num_* count the rows including the reserved unknown index 0.
    """
    return [
        EmbeddingBagConfig(name="user", embedding_dim=dim, num_embeddings=num_users, feature_names=[USER_FEATURE]),
        EmbeddingBagConfig(name="item", embedding_dim=dim, num_embeddings=num_items,
                           feature_names=[ITEM_FEATURE, NEG_FEATURE]),
    ]


class TwoTower(nn.Module):
    """User tower and item tower: pooled ID embedding -> linear projection -> L2 normalisation.

    Args:
        embedding_bag_collection: holds the tables of `two_tower_tables` (any device, "meta" before sharding).
        device: device of the dense projections.

    forward(features) -> (user [B, D], item [B, D], neg [B, D]); rows whose feature is empty come out as the
    projection of a zero vector and are to be ignored by the caller.
    """

    def __init__(self, embedding_bag_collection: EmbeddingBagCollection, device: torch.device | None = None):
        super().__init__()
        configs = embedding_bag_collection.embedding_bag_configs()
        dims = {c.embedding_dim for c in configs}
        if len(dims) != 1:
            raise ValueError(f"TwoTower: user and item tables must share one embedding_dim, got {sorted(dims)}")
        features = {f for c in configs for f in c.feature_names}
        if not {USER_FEATURE, ITEM_FEATURE} <= features:
            raise ValueError(f"TwoTower: tables must provide features {USER_FEATURE!r} and {ITEM_FEATURE!r}, "
                             f"got {sorted(features)}")
        dim = dims.pop()
        self.ebc = embedding_bag_collection
        self.user_proj = nn.Linear(dim, dim, device=device)
        self.item_proj = nn.Linear(dim, dim, device=device)
        self.dim = dim

    def forward(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = self.ebc(features)                                        # KeyedTensor, B x D per feature
        user = F.normalize(self.user_proj(pooled[USER_FEATURE]), dim=-1)   # B x D
        item = F.normalize(self.item_proj(pooled[ITEM_FEATURE]), dim=-1)   # B x D
        neg = F.normalize(self.item_proj(pooled[NEG_FEATURE]), dim=-1)     # B x D
        return user, item, neg


def in_batch_softmax_loss(user: torch.Tensor, item: torch.Tensor, item_idx: torch.Tensor, temperature: float,
                          log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax over the batch's items: row b's positive is item b, the other rows' items are negatives.

    log_q [B]: log sampling frequency of each in-batch item (logQ correction, Yi et al. 2019). Other rows
    holding the same item as row b are masked out (accidental hits).
    """
    logits = user @ item.T / temperature                                  # B x B
    if log_q is not None:
        logits = logits - log_q[None, :]
    same = item_idx[:, None] == item_idx[None, :]
    eye = torch.eye(len(item_idx), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(item_idx), device=logits.device))


def bpr_loss(user: torch.Tensor, item: torch.Tensor, neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """-log sigmoid(s(u, i+) - s(u, i-)) with s = cosine / temperature."""
    return -F.logsigmoid(((user * item).sum(-1) - (user * neg).sum(-1)) / temperature).mean()


class TwoTowerTrain(nn.Module):
    """Thin train wrapper owning the loss: forward(features) -> (loss, loss.detach()).

    Args:
        model: the TwoTower.
        loss: "softmax" (in-batch, logQ-corrected when `log_freq` is given) or "bpr" (needs neg_item_id).
        temperature: scores are cosine / temperature.
        log_freq: [num_items] log frequency of each item index among the training pairs, or None.
    """

    def __init__(self, model: TwoTower, loss: str = "softmax", temperature: float = 0.1,
                 log_freq: torch.Tensor | None = None):
        super().__init__()
        if loss not in ("softmax", "bpr"):
            raise ValueError(f"TwoTowerTrain: loss must be 'softmax' or 'bpr', got {loss!r}")
        self.model = model
        self.loss = loss
        self.temperature = temperature
        self.register_buffer("log_freq", log_freq if log_freq is not None else torch.zeros(0), persistent=False)

    def forward(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        user, item, neg = self.model(features)
        if self.loss == "bpr":
            loss = bpr_loss(user, item, neg, self.temperature)
        else:
            item_idx = features[ITEM_FEATURE].values()                    # B (one id per row)
            log_q = self.log_freq[item_idx] if self.log_freq.numel() else None
            loss = in_batch_softmax_loss(user, item, item_idx, self.temperature, log_q)
        return loss, loss.detach()
