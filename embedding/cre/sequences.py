"""Seq2item examples for CRE (SAIL §3.3.5): a user's earlier positives -> the item engaged next.

Only TRAIN-split positives are read, minus each user's last one (`seq2item_events`): that last positive is the
seq2item evaluation target and is never trained on. The query of an example is the mean embedding of its
history items; two kinds of history (one kind per batch in training):

    vanilla   a random subset of the earlier items;
    filtered  the earlier items most similar to the target under fixed reference vectors (e.g. the content
              model's item embeddings): history consistent with the target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from recsys.data.dataset import Dataset
from recsys.data.split import leave_last_out

log = logging.getLogger(__name__)

SequenceKind = Literal["vanilla", "filtered"]
SEQUENCE_KINDS: tuple[str, ...] = ("vanilla", "filtered")


@dataclass
class SequenceSet:
    """Seq2item examples: the query is the mean embedding of a user's `history` items, the target the item
    engaged next. history: [S, L] item ids in time order, -1 = padding (fewer than L usable earlier items)."""

    kind: str
    user_id: np.ndarray  # [S] int64
    history: np.ndarray  # [S, L] int64
    target: np.ndarray  # [S] int64
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def lengths(self) -> np.ndarray:
        return (self.history >= 0).sum(1)


def seq2item_events(ds: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, targets) = leave_last_out of the TRAIN-split positives (user_id, item_id, timestamp).

    CRE trains on `history` only; `targets` (each user's last train positive, users with >= 2 positives) are
    the seq2item evaluation targets, so no evaluation target is ever trained on."""
    train = ds.split.train(ds.interactions)
    pos = train.loc[ds.is_positive(train), ["user_id", "item_id", "timestamp"]]
    return leave_last_out(pos, min_history=2)


def build_sequences(events: pd.DataFrame, kind: SequenceKind = "vanilla", history_len: int = 10,
                    vector_ids: np.ndarray | None = None, vectors: np.ndarray | None = None, min_history: int = 1,
                    max_lookback: int = 50, last_only: bool = False, seed: int = 0) -> SequenceSet:
    """Seq2item examples from positive `events` (user_id, item_id, timestamp; pass TRAIN-split rows only).

    Every event with at least `min_history` distinct earlier items (among the user's previous `max_lookback`
    events, repeats of the target dropped) is a target (`last_only`: only each user's last event, for
    evaluation). Its history keeps at most `history_len` of those earlier items:
    - vanilla: a random subset (seeded);
    - filtered: the items most similar to the target by cosine of `vectors` (rows aligned with `vector_ids`,
      e.g. the content model's item embeddings): history consistent with the target (SAIL's "filtered"
      sequences; we filter by content similarity rather than tags or ID clusters).
    Kept items stay in time order."""
    if kind not in SEQUENCE_KINDS:
        raise ValueError(f"unknown sequence kind {kind!r}; expected one of {SEQUENCE_KINDS}")
    if history_len < 1 or min_history < 1 or max_lookback < 1:
        raise ValueError(f"history_len={history_len}, min_history={min_history}, max_lookback={max_lookback} "
                         "must all be >= 1")
    df = events.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    users = df["user_id"].to_numpy(np.int64)
    items = df["item_id"].to_numpy(np.int64)
    unit = rows = None
    if kind == "filtered":
        if vectors is None or vector_ids is None:
            raise ValueError("filtered sequences need item vectors (vector_ids + vectors) to rank history items")
        rows = pd.Index(np.asarray(vector_ids, dtype=np.int64)).get_indexer(items)
        if (rows < 0).any():
            raise ValueError(f"item_id {int(items[rows < 0][0])} has no vector ({int((rows < 0).sum())} events)")
        unit = np.asarray(vectors, dtype=np.float32)
        unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(users)].astype(np.int64)
    out_u, out_h, out_t = [], [], []
    for s, e in zip(starts, ends):
        for j in ([e - 1] if last_only else range(s + min_history, e)):
            pos = np.arange(max(s, j - max_lookback), j)
            pos = pos[items[pos] != items[j]]
            _, first_from_end = np.unique(items[pos][::-1], return_index=True)  # distinct, most recent kept
            pos = pos[np.sort(len(pos) - 1 - first_from_end)]
            if len(pos) < min_history:
                continue
            if len(pos) > history_len:
                if kind == "vanilla":
                    pos = pos[np.sort(rng.choice(len(pos), history_len, replace=False))]
                else:
                    sims = unit[rows[pos]] @ unit[rows[j]]
                    order = np.argsort(-sims[::-1], kind="stable")  # ties: most recent first
                    pos = pos[np.sort(len(pos) - 1 - order[:history_len])]
            h = np.full(history_len, -1, dtype=np.int64)
            h[:len(pos)] = items[pos]
            out_u.append(users[j])
            out_h.append(h)
            out_t.append(items[j])
    history = np.stack(out_h) if out_h else np.zeros((0, history_len), np.int64)
    seqs = SequenceSet(kind, np.asarray(out_u, np.int64), history, np.asarray(out_t, np.int64))
    seqs.info = {"sequences": len(seqs), "users": int(len(np.unique(seqs.user_id))),
                 "mean_history": float(seqs.lengths.mean()) if len(seqs) else 0.0}
    log.info("seq2item %s sequences: %s", kind, seqs.info)
    return seqs


__all__ = ["SEQUENCE_KINDS", "SequenceKind", "SequenceSet", "build_sequences", "seq2item_events"]
