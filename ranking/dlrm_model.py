"""The TorchRec pieces of the DLRM ranker: tables, model, jagged batches, batched inference.

KJT in, KeyedTensor out: every sparse (id) feature has its own table, declared once as an ``EmbeddingBagConfig``
(table ``t_<feature>``); the tables form one ``EmbeddingBagCollection`` that ``torchrec.models.dlrm.DLRM`` (dot
interaction) or ``DLRM_DCN`` (low-rank cross net) reads by feature name. A batch holds one id per feature per
row (all lengths 1). Single process, no sharding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torchrec.datasets.utils import Batch
from torchrec.models.dlrm import DLRM, DLRM_DCN
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor


def build_tables(table_sizes: dict[str, int], embedding_dim: int) -> list[EmbeddingBagConfig]:
    """One EmbeddingBagConfig per sparse feature: table `t_<feature>` with `table_sizes[feature]` rows."""
    return [EmbeddingBagConfig(name=f"t_{name}", embedding_dim=embedding_dim, num_embeddings=int(rows),
                               feature_names=[name]) for name, rows in table_sizes.items()]


def build_dlrm(tables: list[EmbeddingBagConfig], dense_in_features: int, dense_arch: Sequence[int],
               over_arch: Sequence[int], device: torch.device, interaction: Literal["dot", "dcn"] = "dot",
               dcn_num_layers: int = 2, dcn_low_rank_dim: int = 16) -> DLRM:
    """DLRM (dot interaction) or DLRM_DCN over an EmbeddingBagCollection of `tables`. Logits: B X 1."""
    ebc = EmbeddingBagCollection(tables=tables, device=device)
    if interaction == "dcn":
        model = DLRM_DCN(embedding_bag_collection=ebc, dense_in_features=dense_in_features,
                         dense_arch_layer_sizes=list(dense_arch), over_arch_layer_sizes=list(over_arch),
                         dcn_num_layers=dcn_num_layers, dcn_low_rank_dim=dcn_low_rank_dim, dense_device=device)
    else:
        model = DLRM(embedding_bag_collection=ebc, dense_in_features=dense_in_features,
                     dense_arch_layer_sizes=list(dense_arch), over_arch_layer_sizes=list(over_arch),
                     dense_device=device)
    return model.to(device)


def build_kjt(ids: torch.Tensor, keys: Sequence[str]) -> KeyedJaggedTensor:
    """[B, F] int64 ids (one id per feature per row) -> KeyedJaggedTensor with all lengths 1.

    Values are laid out key-major, as TorchRec expects::

        #            0      1      2   <-- batch (B = 3)
        # user_id   [u0]   [u1]   [u2]
        # item_id   [i0]   [i1]   [i2]
        # ^ feature
        KeyedJaggedTensor(keys=["user_id", "item_id"],
                          values=tensor([u0, u1, u2, i0, i1, i2]),
                          lengths=tensor([1, 1, 1, 1, 1, 1]))
    """
    b, f = ids.shape
    if f != len(keys):
        raise ValueError(f"ids have {f} columns but {len(keys)} keys were given")
    return KeyedJaggedTensor(keys=list(keys), values=ids.t().reshape(-1).contiguous(),
                             lengths=torch.ones(b * f, dtype=torch.int32, device=ids.device))


def make_batch(dense: torch.Tensor, ids: torch.Tensor, keys: Sequence[str],
               labels: torch.Tensor | None = None) -> Batch:
    """torchrec Batch (what DLRMTrain consumes): dense [B, n_dense], sparse KJT, labels [B]."""
    if labels is None:
        labels = torch.zeros(dense.shape[0], dtype=torch.float32, device=dense.device)
    return Batch(dense_features=dense, sparse_features=build_kjt(ids, keys), labels=labels)


@torch.no_grad()
def model_logits(model: DLRM, dense: torch.Tensor, ids: torch.Tensor, keys: Sequence[str], batch_size: int,
                 device: torch.device) -> np.ndarray:
    """[N] float64 raw logits of `model` over dense [N, n_dense] and ids [N, F], in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, dense.shape[0], batch_size):
        d = dense[start:start + batch_size].to(device)
        i = ids[start:start + batch_size].to(device)
        out.append(model(d, build_kjt(i, keys)).squeeze(-1).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0, dtype=np.float64)
