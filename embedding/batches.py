"""Model batches from encoder outputs: rows of `EncodedItems` / `TextTokens` -> the dict of tensors the model reads.

    text_tokens [B, Lt, Dt] float   text_field [B, Lt] long (-1 = padding)
    image [B, F, P, Di] float       image_mask [B, F] bool            (optional)
    audio [B, K, n_mels, T] or [B, K, Da] float, audio_mask [B, K]   (optional)
    pre_<name> [B, D_name] float, NaN rows = missing                  (optional, one per precomputed vector)

Padding columns that no row of the batch uses are trimmed, so a batch of short items stays short. `Batch` is one
training step's batch of pairs (embedding.train) as these dicts plus ids, masks and grades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from embedding.encoders.types import EncodedItems, TextTokens


def _trim(mask: np.ndarray) -> int:
    """Length up to the last column that any row uses (at least 1)."""
    used = np.flatnonzero(mask.any(0))
    return int(used[-1]) + 1 if len(used) else 1


def collate_texts(tokens: TextTokens, idx: np.ndarray, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Text-only batch (queries, label texts, or an item's text) -> {text_tokens, text_field}."""
    idx = np.asarray(idx)
    field = tokens.field[idx]
    L = _trim(field >= 0)  # drop padding columns no row uses
    return {"text_tokens": torch.as_tensor(np.asarray(tokens.tokens[idx, :L], dtype=np.float32), device=device),
            "text_field": torch.as_tensor(field[:, :L].astype(np.int64), device=device)}


def collate(encoded: EncodedItems, idx: np.ndarray, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Rows `idx` of the encoder outputs -> the model's batch dict (float32 tensors on `device`)."""
    idx = np.asarray(idx)
    batch = collate_texts(encoded.text, idx, device)
    as_t = lambda a, dt=np.float32: torch.as_tensor(np.asarray(a, dtype=dt), device=device)  # noqa: E731
    if encoded.image is not None:
        mask = np.asarray(encoded.image_mask[idx], dtype=bool)
        n = _trim(mask)
        batch["image"], batch["image_mask"] = as_t(encoded.image[idx, :n]), as_t(mask[:, :n], bool)
    if encoded.audio is not None:
        mask = np.asarray(encoded.audio_mask[idx], dtype=bool)
        n = _trim(mask)
        batch["audio"], batch["audio_mask"] = as_t(encoded.audio[idx, :n]), as_t(mask[:, :n], bool)
    for name, v in encoded.precomputed.items():
        batch[f"pre_{name}"] = as_t(v[idx])
    return batch


@dataclass
class Batch:
    """One step's batch: one dataset, B pairs, and the queries' mined hard negatives (M targets) if any."""

    name: str
    task: str
    query: dict[str, torch.Tensor]
    target: dict[str, torch.Tensor]
    labels: torch.Tensor  # (B, 2) query and target ids
    positives: torch.Tensor  # (B, B + M) known training positives: never negatives
    negatives: dict[str, torch.Tensor] | None = None
    negative_ids: torch.Tensor | None = None  # (M,)
    scores: torch.Tensor | None = None  # (B,) graded similarity of each pair (graded datasets: CoSENT)


__all__ = ["Batch", "collate", "collate_texts"]
