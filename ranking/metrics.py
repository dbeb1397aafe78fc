"""Ranking metrics (AUC, GAUC, log loss) and user-level (cluster) bootstrap intervals.

Every metric has the signature ``metric(y, p, groups=None, sample_weight=None) -> float`` so the bootstrap can
call them alike. ``y`` is the 0/1 label, ``p`` the predicted probability (any score for AUC/GAUC), ``groups``
the user id of each example.

- ``auc``: global ROC AUC (scikit-learn ``roc_auc_score``); higher is better.
- ``gauc``: per-user AUC averaged with weights = the user's number of impressions, over users that have both a
  positive and a negative example (others have no AUC); ``gauc_report`` also gives that coverage. Higher is better.
- ``logloss``: binary cross entropy (scikit-learn ``log_loss``, p clipped to [1e-7, 1 - 1e-7]); lower is better.

Bootstrap: examples of one user are correlated, so we resample USERS with replacement (cluster bootstrap) and
report percentile intervals. One implementation, ``bootstrap_interval``, serves every interval of the project:
the ranking metrics (``bootstrap_ci``, ``paired_bootstrap_diff``) and the lifetime simulator's per-user means
(``mean_ci``). A user drawn k times counts k times; this is implemented with per-row weights (k for every row of
that user), which gives exactly the same value as duplicating the rows, without copying data. The paired
versions evaluate both variants on the same user resamples, so the interval is for the difference on the same
examples.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

MetricFn = Callable[..., float]

EPS = 1e-7


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {y.shape[0]} vs {p.shape[0]}")
    return y, p


def _weighted(y, p, sample_weight):
    """(y, p, weights) as arrays, rows of weight 0 (absent from a bootstrap resample) dropped."""
    y, p = _arrays(y, p)
    if sample_weight is None:
        return y, p, None
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    keep = sample_weight > 0
    return y[keep], p[keep], sample_weight[keep]


def auc(y, p, groups=None, sample_weight=None) -> float:
    """Global ROC AUC; NaN when only one class is present. `groups` is ignored."""
    y, p, sample_weight = _weighted(y, p, sample_weight)
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p, sample_weight=sample_weight))


def logloss(y, p, groups=None, sample_weight=None) -> float:
    """Mean binary log loss (natural log), p clipped to [1e-7, 1 - 1e-7]. `groups` is ignored."""
    y, p, sample_weight = _weighted(y, p, sample_weight)
    if len(y) == 0:
        return float("nan")
    return float(log_loss(y, np.clip(p, EPS, 1 - EPS), sample_weight=sample_weight, labels=[0, 1]))


def per_group_auc(y, p, groups) -> pd.DataFrame:
    """One row per group: group, n (impressions), n_pos, auc (NaN without both classes).

    Vectorised Mann-Whitney: AUC_u = (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg), ranks
    within the user with ties averaged, which equals roc_auc_score on that user's rows.
    """
    y, p = _arrays(y, p)
    if groups is None:
        raise ValueError("gauc needs groups (the user id of each example)")
    g = np.asarray(groups).ravel()
    if g.shape != y.shape:
        raise ValueError(f"groups and labels differ in length: {g.shape[0]} vs {y.shape[0]}")
    df = pd.DataFrame({"g": g, "y": y, "p": p})
    df["r"] = df.groupby("g", sort=False)["p"].rank(method="average")
    df["ry"] = df["r"] * df["y"]
    s = df.groupby("g", sort=True).agg(n=("y", "size"), n_pos=("y", "sum"), rank_pos=("ry", "sum"))
    n_neg = s["n"] - s["n_pos"]
    valid = (s["n_pos"] > 0) & (n_neg > 0)
    u = s["rank_pos"] - s["n_pos"] * (s["n_pos"] + 1) / 2
    s["auc"] = np.where(valid, u / (s["n_pos"] * n_neg).where(valid, 1.0), np.nan)
    return s.reset_index().rename(columns={"g": "group"})[["group", "n", "n_pos", "auc"]]


def _gauc_from_table(table: pd.DataFrame, group_weight: np.ndarray | None = None) -> float:
    w = table["n"].to_numpy(dtype=np.float64)
    if group_weight is not None:
        w = w * group_weight
    a = table["auc"].to_numpy()
    ok = ~np.isnan(a) & (w > 0)
    if not ok.any():
        return float("nan")
    return float(np.sum(a[ok] * w[ok]) / np.sum(w[ok]))


def _group_weights_from_rows(table: pd.DataFrame, groups, sample_weight) -> np.ndarray:
    """Row weights -> one weight per group (they must be constant within a group, e.g. cluster bootstrap)."""
    df = pd.DataFrame({"g": np.asarray(groups).ravel(), "w": np.asarray(sample_weight, dtype=np.float64)})
    agg = df.groupby("g", sort=True)["w"].agg(["min", "max"])
    if not np.allclose(agg["min"], agg["max"]):
        raise ValueError("gauc: sample_weight must be constant within each group (user-level weights)")
    return agg["min"].reindex(table["group"]).to_numpy()


def gauc(y, p, groups=None, sample_weight=None) -> float:
    """Impression-weighted mean of per-user AUC over users with both classes (NaN if there are none).

    GAUC = sum_u n_u AUC_u / sum_u n_u, u over users with >= 1 positive and >= 1 negative, n_u = impressions.
    `sample_weight`, if given, must be constant per user (it multiplies n_u, as duplicating the user would).
    """
    table = per_group_auc(y, p, groups)
    gw = None if sample_weight is None else _group_weights_from_rows(table, groups, sample_weight)
    return _gauc_from_table(table, gw)


def gauc_report(y, p, groups) -> dict[str, float]:
    """GAUC with its coverage: share of users and of impressions that have both classes (and so count)."""
    table = per_group_auc(y, p, groups)
    ok = table["auc"].notna()
    return {
        "gauc": _gauc_from_table(table),
        "gauc_users": float(ok.sum()),
        "gauc_user_coverage": float(ok.mean()) if len(table) else float("nan"),
        "gauc_impression_coverage": float(table.loc[ok, "n"].sum() / max(table["n"].sum(), 1)),
    }


METRICS: dict[str, MetricFn] = {"auc": auc, "gauc": gauc, "logloss": logloss}


# --------------------------------------------------------------------------------------------- bootstrap


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class _RankedScores:
    """Weighted ROC AUC of fixed (labels, scores) under many weightings, the scores sorted once.

    AUC = sum over tie groups g of w+_g * (w-_below_g + w-_g / 2) / (W+ W-): the Mann-Whitney form of the
    trapezoidal ROC area roc_auc_score computes (ties count one half), equal to it up to float rounding."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        order = np.argsort(p, kind="stable")
        ps = p[order]
        self.order, self.y = order, y[order]
        self.starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # first row of each tie group

    def auc(self, row_w: np.ndarray) -> float:
        w = row_w[self.order]
        pos = np.add.reduceat(w * self.y, self.starts)
        neg = np.add.reduceat(w * (1.0 - self.y), self.starts)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


class _Evaluator:
    """Evaluates a metric on a cluster resample given as per-cluster counts (fast paths for our metrics)."""

    def __init__(self, metric_fn: MetricFn, y: np.ndarray, p: np.ndarray, codes: np.ndarray, groups):
        self.fn, self.y, self.p, self.codes, self.groups = metric_fn, y, p, codes, groups
        self.weighted = _accepts(metric_fn, "sample_weight")
        self.grouped = _accepts(metric_fn, "groups")
        self.table = self.ranked = None
        if metric_fn is gauc:
            # per-user AUCs do not change under user resampling; only their weights do
            self.table = per_group_auc(y, p, codes)
        elif metric_fn is auc:
            # the score order does not change under resampling either: sort once, then each resample is sums
            self.ranked = _RankedScores(y, p)

    def point(self) -> float:
        if self.table is not None:
            return _gauc_from_table(self.table)
        kw = {"groups": self.groups} if self.grouped else {}
        return float(self.fn(self.y, self.p, **kw))

    def resampled(self, counts: np.ndarray) -> float:
        """counts[c] = how many times cluster c was drawn."""
        if self.table is not None:
            return _gauc_from_table(self.table, counts.astype(np.float64))
        row_w = counts[self.codes].astype(np.float64)
        if self.ranked is not None:
            return self.ranked.auc(row_w)
        if self.weighted:
            kw = {"groups": self.codes} if self.grouped else {}
            return float(self.fn(self.y, self.p, sample_weight=row_w, **kw))
        # generic callable without weights: materialise the resample, relabelling repeated clusters
        idx = np.repeat(np.arange(len(self.y)), row_w.astype(np.int64))
        kw = {}
        if self.grouped:
            rep = np.concatenate([np.arange(k) for k in row_w.astype(np.int64)]) if len(idx) else idx
            kw = {"groups": self.codes[idx] * (int(counts.max()) + 1) + rep}
        return float(self.fn(self.y[idx], self.p[idx], **kw))


def _cluster_codes(n: int, groups) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups).ravel()
    if len(g) != n:
        raise ValueError(f"groups and labels differ in length: {len(g)} vs {n}")
    codes, uniques = pd.factorize(g, sort=True)
    return codes.astype(np.int64), len(uniques)


def _draws(n_clusters: int, n: int, seed: int) -> np.ndarray:
    """[n, n_clusters] counts: each row one bootstrap resample of n_clusters clusters with replacement."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, n_clusters), dtype=np.int32)
    for b in range(n):
        out[b] = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
    return out


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n_clusters: int, n: int = 200, seed: int = 0,
                       alpha: float = 0.05) -> tuple[float, float]:
    """(lo, hi): the (1 - alpha) percentile interval of `statistic(counts)` over `n` cluster resamples.

    counts[c] = how many times cluster c was drawn in one resample of `n_clusters` clusters with replacement.
    Resamples where the statistic is undefined (NaN) are dropped from the interval. The same `seed` gives the
    same resamples, which is what makes two statistics on the same clusters paired.
    """
    if n < 1:
        raise ValueError(f"bootstrap n must be >= 1, got {n}")
    values = np.array([statistic(counts) for counts in _draws(n_clusters, n, seed)], dtype=np.float64)
    return _interval(values, alpha)


def bootstrap_ci(metric_fn: MetricFn, y, p, groups=None, n: int = 200, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float, float]:
    """(point, lo, hi): metric on all data and the (1 - alpha) percentile interval over `n` resamples.

    With `groups` (user ids) whole users are resampled (cluster bootstrap); without, single rows.
    `metric_fn` is one of this module's metrics or any `fn(y, p[, groups][, sample_weight]) -> float`.
    Resamples where the metric is undefined (e.g. one class only) are dropped from the interval.
    """
    y, p = _arrays(y, p)
    codes, n_clusters = _cluster_codes(len(y), groups)
    ev = _Evaluator(metric_fn, y, p, codes, groups)
    return (ev.point(), *bootstrap_interval(ev.resampled, n_clusters, n, seed, alpha))


def paired_bootstrap_diff(metric_fn: MetricFn, y, p_a, p_b, groups=None, n: int = 200, seed: int = 0,
                          alpha: float = 0.05) -> tuple[float, float, float]:
    """(diff, lo, hi) of metric(p_a) - metric(p_b) on the same examples, same user resamples for both.

    For AUC/GAUC a positive diff means variant a is better; for log loss a negative diff does.
    """
    y, p_a = _arrays(y, p_a)
    _, p_b = _arrays(y, p_b)
    codes, n_clusters = _cluster_codes(len(y), groups)
    ev_a = _Evaluator(metric_fn, y, p_a, codes, groups)
    ev_b = _Evaluator(metric_fn, y, p_b, codes, groups)
    interval = bootstrap_interval(lambda c: ev_a.resampled(c) - ev_b.resampled(c), n_clusters, n, seed, alpha)
    return (ev_a.point() - ev_b.point(), *interval)


def pooled_bootstrap(metric_fn: MetricFn, folds: Sequence[tuple], n: int = 200, seed: int = 0,
                     alpha: float = 0.05) -> tuple[float, float, float]:
    """(value, lo, hi) of the mean over folds of metric(p_a) - metric(p_b) (or of metric(p_a) where p_b is None).

    folds: (y, p_a, p_b | None, groups) per fold. The interval resamples users within each fold (a stratified
    cluster bootstrap: fold k's draws depend on (seed, k) only, so two statistics on the same folds are paired);
    each fold weighs the same, as in a rolling-origin mean of per-fold metrics."""
    if not folds:
        raise ValueError("pooled_bootstrap needs at least one fold")
    evaluators, draws = [], []
    for k, (y, p_a, p_b, groups) in enumerate(folds):
        y, p_a = _arrays(y, p_a)
        codes, n_clusters = _cluster_codes(len(y), groups)
        ev_b = None if p_b is None else _Evaluator(metric_fn, y, _arrays(y, p_b)[1], codes, groups)
        evaluators.append((_Evaluator(metric_fn, y, p_a, codes, groups), ev_b))
        draws.append(_draws(n_clusters, n, seed + 7919 * k))

    def value(a: _Evaluator, b: _Evaluator | None, counts: np.ndarray | None) -> float:
        pick = (lambda ev: ev.point()) if counts is None else (lambda ev: ev.resampled(counts))
        return pick(a) - (pick(b) if b is not None else 0.0)

    point = float(np.mean([value(a, b, None) for a, b in evaluators]))
    values = np.array([np.mean([value(a, b, d[r]) for (a, b), d in zip(evaluators, draws)]) for r in range(n)])
    return (point, *_interval(values.astype(np.float64), alpha))


def mean_ci(values, n: int = 200, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, lo, hi) of one value per cluster (e.g. a user's LT7); NaN = not eligible, left out of the mean.

    Clusters are resampled as a whole (NaN ones included, so the eligible count varies like the data would). For a
    paired difference pass the per-cluster difference with the same `seed`: both policies see the same resamples.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    eligible = ~np.isnan(v)
    if not eligible.any():
        return float("nan"), float("nan"), float("nan")
    x = np.where(eligible, v, 0.0)

    def resampled_mean(counts: np.ndarray) -> float:
        weight = float(counts @ eligible)
        return float(counts @ x) / weight if weight else float("nan")

    return (float(v[eligible].mean()), *bootstrap_interval(resampled_mean, len(v), n, seed, alpha))
