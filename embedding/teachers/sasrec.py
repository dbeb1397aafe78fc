"""Sequence-to-item teacher: SASRec-style causal transformer over item-ID sequences.

The item table is a TorchRec `EmbeddingCollection` (per-position, unpooled embeddings) declared by
`sasrec_tables`; feature "seq" carries the input sequences and feature "cand" the candidate items scored by the
next-item loss (both read the same table rows). No sharding here: `embedding.teachers.train` wraps `SASRecTrain`
in DistributedModelParallel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingConfig
from torchrec.modules.embedding_modules import EmbeddingCollection
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

SEQ_FEATURE = "seq"
CAND_FEATURE = "cand"
FEATURES = (SEQ_FEATURE, CAND_FEATURE)


def sasrec_tables(num_items: int, dim: int) -> list[EmbeddingConfig]:
    """One table "item" (rows incl. the reserved unknown index 0) read by features seq and cand."""
    return [EmbeddingConfig(name="item", embedding_dim=dim, num_embeddings=num_items,
                            feature_names=[SEQ_FEATURE, CAND_FEATURE])]


class SASRec(nn.Module):
    """Item embeddings + learned absolute positions -> causal pre-norm transformer -> L2-normalised states.

    Args:
        embedding_collection: holds the table of `sasrec_tables`.
        max_len: longest input sequence (positions 0..max_len-1, left aligned: position 0 = oldest item).
        layers, heads, dropout: transformer shape.
        device: device of the dense part.

    forward(features) -> (hidden [B, L, D] L2-normalised, valid [B, L] bool, cand [C, D] L2-normalised)
    with L = max_len; hidden[b, t] summarises seq[b, :t+1] (it is the query for the item after it).
    """

    def __init__(self, embedding_collection: EmbeddingCollection, max_len: int = 50, layers: int = 2,
                 heads: int = 2, dropout: float = 0.2, device: torch.device | None = None):
        super().__init__()
        configs = embedding_collection.embedding_configs()
        if len(configs) != 1 or set(configs[0].feature_names) != set(FEATURES):
            raise ValueError(f"SASRec: expects one table with features {FEATURES}, got "
                             f"{[(c.name, c.feature_names) for c in configs]}")
        dim = configs[0].embedding_dim
        if dim % heads:
            raise ValueError(f"SASRec: dim {dim} must be divisible by heads {heads}")
        self.ec = embedding_collection
        self.dim, self.max_len = dim, max_len
        self.pos = nn.Embedding(max_len, dim, device=device)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True, activation="gelu", device=device)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, device=device)
        self.register_buffer("causal", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool, device=device),
                                                  diagonal=1), persistent=False)

    def encode(self, seq: JaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Jagged item embeddings -> (hidden [B, L, D], valid [B, L])."""
        lengths = seq.lengths()
        x = seq.to_padded_dense(desired_length=self.max_len, padding_value=0.0)       # B x L x D
        L = self.max_len
        t = torch.arange(L, device=x.device)
        valid = t[None, :] < lengths[:, None]                                         # B x L
        x = self.drop(x * self.dim ** 0.5 + self.pos(t)[None])
        pad = ~valid
        pad[:, 0] = False                      # empty rows: let position 0 attend to itself (no NaN; ignored)
        h = self.encoder(x, mask=self.causal, src_key_padding_mask=pad)               # B x L x D
        return F.normalize(self.norm(h), dim=-1), valid

    def forward(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.ec(features)                                                       # dict[str, JaggedTensor]
        hidden, valid = self.encode(emb[SEQ_FEATURE])
        cand = F.normalize(emb[CAND_FEATURE].values(), dim=-1)                        # C x D
        return hidden, valid, cand

    def embed_items(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """L2-normalised table rows of the cand feature, [C, D] (no transformer)."""
        return F.normalize(self.ec(features)[CAND_FEATURE].values(), dim=-1)

    def embed_sequences(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """State after the last item of each seq row, [B, D] (the query for the next item)."""
        hidden, valid = self.encode(self.ec(features)[SEQ_FEATURE])
        last = (valid.sum(1) - 1).clamp(min=0)
        return hidden[torch.arange(len(last), device=hidden.device), last]


class SASRecTrain(nn.Module):
    """Thin train wrapper owning the next-item loss.

    forward(features, target [B, L] (index into the concatenated cand list; -1 = no target), log_q [C])
    -> (loss, loss.detach()). Sampled softmax of each position's state against all candidates (the batch's
    unique targets plus random negatives), logits = cosine / temperature - log_q.
    """

    def __init__(self, model: SASRec, temperature: float = 0.1):
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(self, features: KeyedJaggedTensor, target: torch.Tensor, log_q: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, valid, cand = self.model(features)
        mask = target >= 0                                                            # B x L
        q = hidden[mask]                                                              # P x D
        logits = q @ cand.T / self.temperature                                        # P x C
        if log_q is not None:
            logits = logits - log_q[None, :]
        loss = F.cross_entropy(logits, target[mask])
        return loss, loss.detach()
