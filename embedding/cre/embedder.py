"""How CRE embeds item rows with gradients: the full model, or (frozen fusion) cached fusion outputs + item memory.

With `finetune_fusion: false` the fusion transformer does not train, so its per-item output before the item
memory is computed once (`frozen_outputs`) and each step costs one item-memory MLP pass; the result is the same
function the saved model computes, so the table written after CRE carries exactly the trained vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from embedding.batches import collate
from embedding.encoders.types import EncodedItems
from embedding.infer import ITEM_ROLE, ITEM_TASK, embed_items
from embedding.model import OmniEmbeddingModel


@dataclass
class FrozenOutputs:
    """What a frozen fusion model gives each item, computed once: raw[role] -> [N, D] output before the item
    memory and normalisation; memory_inputs [N, F] the item memory's input features (no field dropout)."""

    raw: dict[str, torch.Tensor]
    memory_inputs: torch.Tensor


@torch.no_grad()
def frozen_outputs(model: OmniEmbeddingModel, encoded: EncodedItems, roles: list[str], batch_size: int,
                   device: torch.device) -> FrozenOutputs:
    """Run the model (with its item memory) once over every item, in eval mode, for each role."""
    if model.memory is None:
        raise ValueError("frozen_outputs needs a model with an item memory (OmniEmbeddingModel.with_memory)")
    was_training = model.training
    model.eval()
    raw: dict[str, list[torch.Tensor]] = {r: [] for r in roles}
    inputs = []
    for s in range(0, len(encoded), batch_size):
        batch = collate(encoded, np.arange(s, min(len(encoded), s + batch_size)), device)
        for r in roles:
            r_raw, _, _, tmask = model.content_raw(batch, role=r, task=ITEM_TASK)
            raw[r].append(r_raw)
        inputs.append(model.memory.features(batch, tmask))
    model.train(was_training)
    return FrozenOutputs({r: torch.cat(v) for r, v in raw.items()}, torch.cat(inputs))


class ItemEmbedder:
    """rows -> item embeddings [len(rows), D] with gradients (task i2i, the item table's instruction)."""

    def __init__(self, model: OmniEmbeddingModel, encoded: EncodedItems, frozen: FrozenOutputs | None,
                 device: torch.device, infer_batch_size: int) -> None:
        self.model, self.encoded, self.frozen, self.device = model, encoded, frozen, device
        self.infer_batch_size = infer_batch_size

    def __call__(self, rows: np.ndarray, role: str) -> torch.Tensor:
        if self.frozen is None:
            return self.model(collate(self.encoded, rows, self.device), role=role, task=ITEM_TASK).embedding
        r = torch.as_tensor(rows, device=self.device)
        return F.normalize(self.frozen.raw[role][r] + self.model.memory.net(self.frozen.memory_inputs[r]), dim=-1)

    def all_items(self) -> np.ndarray:
        """Every item as the item table embeds it, without gradients -> [N, D] float32."""
        return embed_items(self.model, self.encoded, self.infer_batch_size, str(self.device), role=ITEM_ROLE,
                           task=ITEM_TASK)


__all__ = ["FrozenOutputs", "ItemEmbedder", "frozen_outputs"]
