"""Adaptive multi-source data balancing (SAIL §3.1.3): dataset sampling weights from how well each training
set's samples cover validation sets that resemble the downstream tasks.

    samples of each training set and each validation set, embedded with an early checkpoint
    -> k-means per set (sklearn) -> for each (train, validation) pair the centroid cosine matrix C
    -> Sinkhorn transport plan P from the cost 1 - C, with the clusters' sizes as marginals -> score = sum(P * C)
    -> mean over validation sets -> softmax(score / temperature) over training sets = the sampling weights

A sample is one pair: the normalised sum of its two sides' normalised embeddings (what the pair relates, not
just which items it touches). Ours where the paper is silent: k, the Sinkhorn epsilon, the temperature, the
sample vector and the marginals (see `BalanceConfig`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import logsumexp, softmax
from sklearn.cluster import KMeans

from embedding.evaluate import normalize


class BalanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: int = Field(2000, gt=1, description="pairs embedded per training and validation set (seeded)")
    clusters: int = Field(16, gt=0, description="k-means clusters per set (fewer when a set has fewer samples)")
    epsilon: float = Field(0.05, gt=0, description="entropic regularisation of Sinkhorn")
    temperature: float = Field(0.1, gt=0, description="softmax temperature over the training sets' scores")
    seed: int = 0


def sinkhorn(cost: np.ndarray, a: np.ndarray, b: np.ndarray, epsilon: float, iters: int = 500,
             tol: float = 1e-9) -> np.ndarray:
    """Entropic optimal transport plan P (rows sum to a, columns to b) for `cost`, in the log domain."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.isclose(a.sum(), 1) and np.isclose(b.sum(), 1)) or (a <= 0).any() or (b <= 0).any():
        raise ValueError("Sinkhorn marginals must be positive and sum to 1")
    log_k = -np.asarray(cost, np.float64) / epsilon
    log_a, log_b = np.log(a), np.log(b)
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(iters):
        f = log_a - logsumexp(log_k + g[None, :], axis=1)
        g_new = log_b - logsumexp(log_k + f[:, None], axis=0)
        if np.max(np.abs(g_new - g)) < tol:
            g = g_new
            break
        g = g_new
    return np.exp(f[:, None] + log_k + g[None, :])


def _clusters(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(normalised centroids, cluster shares) of k-means on the normalised vectors."""
    x = normalize(vectors)
    k = max(1, min(k, len(np.unique(x.round(6), axis=0))))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x)
    shares = np.bincount(km.labels_, minlength=k).astype(np.float64)
    keep = shares > 0
    return normalize(km.cluster_centers_[keep]), shares[keep] / shares.sum()


def transport_score(train: np.ndarray, valid: np.ndarray, cfg: BalanceConfig) -> float:
    """sum(P * C) of the two sets' centroids: how closely the training samples cover the validation samples."""
    ct, at = _clusters(train, cfg.clusters, cfg.seed)
    cv, av = _clusters(valid, cfg.clusters, cfg.seed)
    c = ct @ cv.T
    return float((sinkhorn(1.0 - c, at, av, cfg.epsilon) * c).sum())


def balance_weights(train_sets: dict[str, np.ndarray], valid_sets: dict[str, np.ndarray], cfg: BalanceConfig
                    ) -> tuple[dict[str, float], pd.DataFrame]:
    """Sampling weights of the training sets and the score table (rows: training sets, columns: validation
    sets, plus their mean and the weight)."""
    if not train_sets or not valid_sets:
        raise ValueError(f"balancing needs training and validation sets (got {sorted(train_sets)} and "
                         f"{sorted(valid_sets)})")
    names = sorted(train_sets)
    table = pd.DataFrame({v: [transport_score(train_sets[t], valid_sets[v], cfg) for t in names]
                          for v in sorted(valid_sets)}, index=pd.Index(names, name="dataset"))
    table["mean"] = table.mean(axis=1)
    table["weight"] = softmax(table["mean"].to_numpy() / cfg.temperature)
    return {t: float(w) for t, w in table["weight"].items()}, table


__all__ = ["BalanceConfig", "balance_weights", "sinkhorn", "transport_score"]
