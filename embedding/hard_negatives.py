"""Dynamic hard negative mining (SAIL §3.1.2), on vectors from an earlier checkpoint of the same run.

Per dataset: score query/target pairs, treat ``s >= lambda`` as "positive" and choose
``lambda* = argmax_lambda F1(lambda)`` against the known training positives (`choose_threshold`). Among each
query's nearest targets (faiss exact search), candidates at or above lambda* that are not known positives are
dropped as likely false negatives; the k highest-scoring ones below lambda* become the query's hard negatives,
added to the in-batch negatives of every batch it is in (`mine_hard_negatives`).

Ours where the paper is silent: lambda* is chosen on a seeded sample of queries scored against the whole
corpus (`threshold_queries`), the candidates are each query's `pool` nearest targets, and k is a stage setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from embedding.evaluate import exact_search, normalize

CURVE_POINTS = 200
"""Rows kept of the F1 curve for logging (evenly spaced over its thresholds)."""


@dataclass
class MinedNegatives:
    """negatives[q]: corpus rows of query q's hard negatives, best first (-1 where fewer were found)."""

    negatives: np.ndarray  # [Q, k] int64
    threshold: float  # lambda*
    curve: pd.DataFrame  # threshold, precision, recall, f1 (thinned to CURVE_POINTS rows)
    info: dict = field(default_factory=dict)  # queries, dropped (likely false negatives), found, k, f1 at lambda*


def choose_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, pd.DataFrame]:
    """lambda* = argmax F1 of "s >= lambda is a positive" against `positive`, over every distinct score;
    returns (lambda*, the curve)."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any() or positive.all():
        raise ValueError(f"choosing lambda* needs known positives and negatives among the {len(positive)} scored "
                         f"pairs (got {int(positive.sum())} positives)")
    precision, recall, thresholds = precision_recall_curve(positive, np.asarray(scores, dtype=np.float64))
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    curve = pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall, "f1": f1})
    if len(curve) > CURVE_POINTS:
        keep = np.unique(np.r_[np.linspace(0, len(curve) - 1, CURVE_POINTS).round().astype(int), best])
        curve = curve.iloc[keep].reset_index(drop=True)
    return float(thresholds[best]), curve


def mine_hard_negatives(query_vecs: np.ndarray, corpus_vecs: np.ndarray, positives: Sequence[np.ndarray], k: int,
                        self_rows: np.ndarray | None = None, pool: int = 50, threshold_queries: int = 500,
                        seed: int = 0) -> MinedNegatives:
    """Hard negatives of each query (row q of `query_vecs`) among the corpus rows.

    Args:
        positives: positives[q] = the corpus rows known to be positives of query q (never negatives).
        k: hard negatives kept per query.
        self_rows: the corpus row of each query that is the query itself (i2i), -1 where none.
        pool: nearest corpus rows searched per query.
        threshold_queries: queries (a seeded sample) scored against the whole corpus to choose lambda*.
    """
    q, c = normalize(query_vecs), normalize(corpus_vecs)
    n_q, n_c = len(q), len(c)
    if len(positives) != n_q:
        raise ValueError(f"{len(positives)} positive lists for {n_q} queries")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    self_rows = np.full(n_q, -1, np.int64) if self_rows is None else np.asarray(self_rows, np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n_q, min(n_q, threshold_queries), replace=False))
    scores = q[sample] @ c.T  # (S, N)
    is_pos = np.zeros_like(scores, dtype=bool)
    valid = np.ones_like(scores, dtype=bool)
    for i, row in enumerate(sample):
        is_pos[i, positives[row]] = True
        if self_rows[row] >= 0:
            valid[i, self_rows[row]] = False
    threshold, curve = choose_threshold(scores[valid], is_pos[valid])

    top_scores, top = exact_search(q, c, min(n_c, pool + 1 + max((len(p) for p in positives), default=0)))
    negatives = np.full((n_q, k), -1, np.int64)
    dropped = 0
    for i in range(n_q):
        keep = (top[i] >= 0) & (top[i] != self_rows[i]) & ~np.isin(top[i], positives[i])
        rows, s = top[i][keep][:pool], top_scores[i][keep][:pool]
        dropped += int((s >= threshold).sum())
        below = rows[s < threshold][:k]
        negatives[i, :len(below)] = below
    found = int((negatives >= 0).sum())
    f1 = float(curve.loc[(curve["threshold"] - threshold).abs().idxmin(), "f1"])
    return MinedNegatives(negatives, threshold, curve, {
        "queries": n_q, "k": k, "pool": pool, "dropped": dropped, "found": found, "f1": f1,
        "threshold_pairs": int(valid.sum()), "threshold_positives": int(is_pos[valid].sum())})


__all__ = ["MinedNegatives", "choose_threshold", "mine_hard_negatives"]
