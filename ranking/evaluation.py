"""Test-period evaluation of ranker variants: metrics with user-bootstrap CIs, paired differences, segments.

Every variant is scored on the same test rows, so each difference (vs the baseline, vs a named reference such
as a CRE variant's content-only twin) uses a paired user-level bootstrap: the same user resamples for both
variants (`ranking.metrics`). A segment (e.g. cold-start items) is a boolean mask over the test rows; each
variant's AUC on it gets its own interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ranking.metrics import METRICS, bootstrap_ci, gauc_report, paired_bootstrap_diff

REFERENCE_METRICS = ("auc", "gauc")
"""Metrics of the paired differences against a named reference variant."""


def _nan_interval(key: str) -> dict[str, float]:
    return {key: np.nan, f"{key}_lo": np.nan, f"{key}_hi": np.nan}


def variant_metrics(y: np.ndarray, p: np.ndarray, users: np.ndarray, n_bootstrap: int, seed: int,
                    alpha: float) -> dict[str, float]:
    """auc, gauc, logloss (each with _lo/_hi) and GAUC's coverage (gauc_users, gauc_*_coverage)."""
    row: dict[str, float] = {}
    for name, fn in METRICS.items():
        point, lo, hi = bootstrap_ci(fn, y, p, users, n=n_bootstrap, seed=seed, alpha=alpha)
        row.update({name: point, f"{name}_lo": lo, f"{name}_hi": hi})
    row.update({k: v for k, v in gauc_report(y, p, users).items() if k != "gauc"})
    return row


def paired_differences(y: np.ndarray, users: np.ndarray, p: np.ndarray, p_ref: np.ndarray | None, suffix: str,
                       metrics: tuple[str, ...], n_bootstrap: int, seed: int, alpha: float) -> dict[str, float]:
    """{metric}_diff_{suffix}(+_lo/_hi) of p minus p_ref on the same user resamples; NaN without a reference."""
    row: dict[str, float] = {}
    for name in metrics:
        key = f"{name}_diff_{suffix}"
        if p_ref is None:
            row.update(_nan_interval(key))
            continue
        d, lo, hi = paired_bootstrap_diff(METRICS[name], y, p, p_ref, users, n=n_bootstrap, seed=seed, alpha=alpha)
        row.update({key: d, f"{key}_lo": lo, f"{key}_hi": hi})
    return row


def segment_auc(y: np.ndarray, users: np.ndarray, p: np.ndarray, name: str, mask: np.ndarray, n_bootstrap: int,
                seed: int, alpha: float) -> dict[str, float]:
    """n_<name> and auc_<name>(+_lo/_hi) on the masked rows; NaN where the slice has one class only."""
    row: dict[str, float] = {f"n_{name}": int(mask.sum())}
    if not mask.any() or len(np.unique(y[mask])) < 2:
        return {**row, **_nan_interval(f"auc_{name}")}
    point, lo, hi = bootstrap_ci(METRICS["auc"], y[mask], p[mask], users[mask], n=n_bootstrap, seed=seed,
                                 alpha=alpha)
    return {**row, f"auc_{name}": point, f"auc_{name}_lo": lo, f"auc_{name}_hi": hi}


def evaluate_variants(y: np.ndarray, users: np.ndarray, predictions: Mapping[str, np.ndarray], baseline: str, *,
                      comparisons: Mapping[str, str] | None = None, ranker_baselines: Mapping[str, str] | None = None,
                      segments: Mapping[str, np.ndarray] | None = None, n_bootstrap: int = 200, seed: int = 0,
                      alpha: float = 0.05) -> pd.DataFrame:
    """One row per variant (in `predictions` order): variant, metrics with CIs, GAUC coverage,
    {auc,gauc,logloss}_diff_vs_baseline(+_lo/_hi) against `baseline`, ranker_baseline with
    {auc,gauc}_diff_vs_ranker(+_lo/_hi), ref_variant with {auc,gauc}_diff_vs_ref(+_lo/_hi), and per segment
    n_<name>, auc_<name>(+_lo/_hi).

    baseline: the reference of every variant (the strongest baseline); ranker_baselines: variant -> the baseline
    of its own ranker; comparisons: variant -> another reference (e.g. its content-only twin); segments: name ->
    bool mask over the test rows.
    """
    y = np.asarray(y, dtype=np.float64)
    users = np.asarray(users)
    comparisons, segments = dict(comparisons or {}), dict(segments or {})
    ranker_baselines = dict(ranker_baselines or {})
    if baseline not in predictions:
        raise ValueError(f"baseline '{baseline}' is not one of the variants {list(predictions)}")
    for what, refs in (("comparisons", comparisons), ("ranker_baselines", ranker_baselines)):
        unknown = sorted({*refs, *refs.values()} - set(predictions))
        if unknown:
            raise ValueError(f"{what} name variants that were not run: {unknown}")
    masks = {name: np.asarray(mask, dtype=bool) for name, mask in segments.items()}
    for name, mask in masks.items():
        if mask.shape != y.shape:
            raise ValueError(f"segment {name!r}: mask has shape {mask.shape}, the test frame {y.shape}")
    rows = []
    for variant, p in predictions.items():
        p = np.asarray(p, dtype=np.float64)
        row: dict = {"variant": variant, **variant_metrics(y, p, users, n_bootstrap, seed, alpha)}
        base = None if variant == baseline else predictions[baseline]
        row.update(paired_differences(y, users, p, base, "vs_baseline", tuple(METRICS), n_bootstrap, seed, alpha))
        own = ranker_baselines.get(variant)
        row["ranker_baseline"] = own
        row.update(paired_differences(y, users, p, None if own is None else predictions[own], "vs_ranker",
                                      REFERENCE_METRICS, n_bootstrap, seed, alpha))
        ref = comparisons.get(variant)
        row["ref_variant"] = ref
        row.update(paired_differences(y, users, p, None if ref is None else predictions[ref], "vs_ref",
                                      REFERENCE_METRICS, n_bootstrap, seed, alpha))
        for name, mask in masks.items():
            row.update(segment_auc(y, users, p, name, mask, n_bootstrap, seed, alpha))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(y: np.ndarray, users: np.ndarray, predictions: Mapping[str, np.ndarray],
                 pairs: Sequence[tuple[str, str, str]], n_bootstrap: int = 200, seed: int = 0,
                 alpha: float = 0.05) -> pd.DataFrame:
    """One row per (label, variant, reference): the paired AUC and GAUC differences variant - reference with
    their intervals (e.g. the feature-group attribution: a variant against itself without one group)."""
    y, users = np.asarray(y, dtype=np.float64), np.asarray(users)
    rows = [{"group": label, "variant": v, "without": ref,
             **paired_differences(y, users, np.asarray(predictions[v], np.float64),
                                  np.asarray(predictions[ref], np.float64), "vs_without", REFERENCE_METRICS,
                                  n_bootstrap, seed, alpha)}
            for label, v, ref in pairs]
    return pd.DataFrame(rows, columns=["group", "variant", "without"] + (list(rows[0])[3:] if rows else []))
