"""Next-item evaluation on leave-last-out inside the train period.

`leave_last_out(train positives)`: per user with >= 2 train positives, the last one is the target and the
earlier ones are the history. Every method scores ALL items of the teachers' item vocabulary (items with a train
positive); a target outside it is a miss. With `exclude_history` (default) the user's history items are masked
before ranking, so a target that repeats a history item counts as a miss (`eval/targets_in_history` says how
often that happens). Ties count against the target (pessimistic rank). Evaluators return dict[str, float] with
keys "<name>/recall@k" and "<name>/ndcg@k"; recall@10 is the primary metric, greater is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from embedding.teachers.data import TeacherData, Vocab


@dataclass
class NextItemTask:
    """Users (sorted), their target item and history (raw ids), the item universe and training popularity."""

    user_ids: np.ndarray          # [U] int64
    targets: np.ndarray           # [U] int64 raw item ids
    history: list[np.ndarray]     # U arrays of raw item ids, time ordered
    items: Vocab                  # the scored item universe
    popularity: np.ndarray        # [len(items)] positives per item among the rows the models were fitted on


def next_item_task(data: TeacherData) -> NextItemTask:
    if data.targets is None or data.history is None:
        raise ValueError("next_item_task: teacher data was built without holdout_last")
    targets = data.targets.sort_values("user_id")
    hist = {u: g["item_id"].to_numpy() for u, g in data.history.groupby("user_id", sort=True)}
    users = targets["user_id"].to_numpy()
    counts = np.bincount(data.items.lookup(data.fit["item_id"].to_numpy()), minlength=data.items.num_embeddings)
    return NextItemTask(users, targets["item_id"].to_numpy(), [hist[u] for u in users], data.items,
                        counts[1:].astype(np.float64))


def rank_metrics(scores: np.ndarray, task: NextItemTask, ks=(10, 50), exclude_history: bool = True,
                 name: str = "model") -> dict[str, float]:
    """scores [U, N] over task.items.ids (row u = task.user_ids[u]) -> recall@k and ndcg@k."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    U, N = scores.shape
    if (U, N) != (len(task.user_ids), len(task.items)):
        raise ValueError(f"rank_metrics: scores shape {scores.shape} != (users {len(task.user_ids)}, "
                         f"items {len(task.items)})")
    if exclude_history:
        for u, h in enumerate(task.history):
            idx = task.items.lookup(h)
            scores[u, idx[idx > 0] - 1] = -np.inf
    t_idx = task.items.lookup(task.targets) - 1                                       # -1 = unknown target
    known = t_idx >= 0
    t_score = np.where(known, scores[np.arange(U), np.maximum(t_idx, 0)], -np.inf)
    # pessimistic rank: items scoring at least as high as the target, the target itself excluded
    rank = (scores >= t_score[:, None]).sum(1) - 1
    rank = np.where(known & np.isfinite(t_score), rank, N)
    out = {}
    for k in ks:
        hit = rank < k
        out[f"{name}/recall@{k}"] = float(hit.mean())
        out[f"{name}/ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean())
    return out


def evaluate_next_item(user_vectors: np.ndarray, item_ids: np.ndarray, item_vectors: np.ndarray,
                       task: NextItemTask, ks=(10, 50), exclude_history: bool = True,
                       name: str = "model") -> dict[str, float]:
    """Dot-product scores of user vectors [U, D] (aligned with task.user_ids) against item vectors [N, D].

    Items of the universe missing from `item_ids` score -inf.
    """
    pos = pd.Index(np.asarray(item_ids, dtype=np.int64)).get_indexer(task.items.ids)
    vecs = np.asarray(item_vectors, dtype=np.float64)
    scores = np.full((len(task.user_ids), len(task.items)), -np.inf)
    have = pos >= 0
    scores[:, have] = np.asarray(user_vectors, dtype=np.float64) @ vecs[pos[have]].T
    return rank_metrics(scores, task, ks, exclude_history, name)


def evaluate_popularity(task: NextItemTask, ks=(10, 50), exclude_history: bool = True,
                        name: str = "popularity") -> dict[str, float]:
    """Most-positives-first baseline (counts from the fitted rows, i.e. without the held-out targets)."""
    scores = np.broadcast_to(task.popularity, (len(task.user_ids), len(task.items)))
    return rank_metrics(scores, task, ks, exclude_history, name)


def task_info(task: NextItemTask) -> dict[str, float]:
    in_hist = [t in set(h.tolist()) for t, h in zip(task.targets, task.history)]
    return {"eval/users": float(len(task.user_ids)), "eval/items": float(len(task.items)),
            "eval/targets_in_history": float(np.mean(in_hist)) if in_hist else 0.0}
