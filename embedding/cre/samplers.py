"""Which item rows a CRE step trains on: one sampler per kind of batch (as sentence-transformers' batch samplers).

Every sampler draws from the generator it is handed; the loop seeds that generator with (seed, step), so the
batch of step s depends only on (seed, s) and a resumed run redraws exactly the batches it missed.

    Seq2ItemSampler   one sequence kind per batch (SAIL's stochastic specialization) -> SequenceBatch
    ID2ItemSampler    items with a teacher vector (+ auxiliary co-engagement pairs)  -> DistillBatch
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from embedding.cre.data import SequenceRows

BatchT = TypeVar("BatchT", covariant=True)


class BatchSampler(Protocol[BatchT]):
    def sample(self, rng: np.random.Generator) -> BatchT: ...


@dataclass
class SequenceBatch:
    """B seq2item examples of one kind. history [B, L] item rows (-1 = padding), target [B]; live [B, L]: the
    history slots embedded with gradients this step (the others are read from the item bank)."""

    kind: str
    index: np.ndarray  # [B] which examples of the kind: ids for the in-batch duplicate mask
    history: np.ndarray
    target: np.ndarray
    live: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """The sorted unique item rows this batch embeds with gradients."""
        return np.unique(np.concatenate([self.target, self.history[self.live]]))


class Seq2ItemSampler:
    """Draws a sequence kind with probability `mix[kind]` (normalised), then `batch_size` of its examples
    without replacement; with `live_slots`, only that many random valid history slots per example are live."""

    def __init__(self, sequences: dict[str, SequenceRows], mix: dict[str, float], batch_size: int,
                 live_slots: int | None = None) -> None:
        self.kinds = [k for k in sequences if mix.get(k, 0) > 0]
        if not self.kinds:
            raise ValueError(f"no sequence kind with a positive share: kinds {sorted(sequences)}, mix {mix}")
        weights = np.array([mix[k] for k in self.kinds], dtype=np.float64)
        self.sequences, self.p = sequences, weights / weights.sum()
        self.batch_size, self.live_slots = batch_size, live_slots

    def sample(self, rng: np.random.Generator) -> SequenceBatch:
        kind = self.kinds[rng.choice(len(self.kinds), p=self.p)]
        seqs = self.sequences[kind]
        pick = rng.choice(len(seqs), size=min(self.batch_size, len(seqs)), replace=False)
        history, target = seqs.history[pick], seqs.target[pick]  # (B, L), (B,)
        valid = history >= 0
        score = np.where(valid, rng.random(history.shape), -1.0)  # drawn with or without a bank: same stream
        live = np.zeros_like(valid)
        n_live = self.live_slots or history.shape[1]
        np.put_along_axis(live, np.argsort(-score, axis=1, kind="stable")[:, :n_live], True, axis=1)
        return SequenceBatch(kind, pick, history, target, live & valid)


@dataclass
class DistillBatch:
    """rows [B]: items distilled onto the teachers (target role); aux_query / aux_target [A]: co-engagement
    pairs of the auxiliary i2i loss (empty when it is off)."""

    rows: np.ndarray
    aux_query: np.ndarray
    aux_target: np.ndarray

    @property
    def target_rows(self) -> np.ndarray:
        """The sorted unique rows embedded in the target role (distilled items and aux targets)."""
        return np.unique(np.concatenate([self.rows, self.aux_target]))


class ID2ItemSampler:
    """Draws `batch_size` distillation items without replacement and, with aux pairs, `aux_batch_size` pairs
    whose sides are swapped at random (either item may be the query)."""

    def __init__(self, distill_rows: np.ndarray, aux_pairs: tuple[np.ndarray, np.ndarray] | None,
                 batch_size: int, aux_batch_size: int) -> None:
        self.distill_rows, self.aux_pairs = distill_rows, aux_pairs
        self.batch_size, self.aux_batch_size = batch_size, aux_batch_size

    def sample(self, rng: np.random.Generator) -> DistillBatch:
        n = len(self.distill_rows)
        rows = self.distill_rows[rng.choice(n, min(self.batch_size, n), False)]
        if self.aux_pairs is None:
            empty = np.zeros(0, np.int64)
            return DistillBatch(rows, empty, empty)
        q, t = self.aux_pairs
        k = rng.choice(len(q), min(self.aux_batch_size, len(q)), replace=False)
        swap = rng.random(len(k)) < 0.5
        return DistillBatch(rows, np.where(swap, t[k], q[k]), np.where(swap, q[k], t[k]))


__all__ = ["BatchSampler", "DistillBatch", "ID2ItemSampler", "Seq2ItemSampler", "SequenceBatch"]
