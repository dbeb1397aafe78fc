"""Ranking experiment: feature-set variants -> one ranker each -> test metrics with CIs -> MLflow runs.

Protocol (see ranking.examples): rankers train on the VALID-period frame (features point-in-time) with early
stopping on its latest 20% by time, and are evaluated on the TEST-period frame. Every variant is scored on the
same test examples (`ranking.evaluation`: paired user-level bootstrap), and logged to MLflow
(`ranking.tracking`). Rankers are used only through the `ranking.ranker.Ranker` protocol; a variant's kind picks
the implementation (`ranking.registry`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ranking.evaluation import evaluate_variants, paired_table
from ranking.importance import permutation_auc_drop
from ranking.ranker import Ranker
from ranking.registry import new_ranker
from ranking.tracking import log_experiment
from ranking.variants import VariantSpec, default_variants
from recsys.errors import DataError

logger = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_timestamp", "label")


@dataclass
class ExperimentResult:
    """table: one row per variant; predictions: test keys + one score column per variant name; baseline: the
    strongest baseline (by validation AUC) every lift is measured against; attribution: feature-group
    drop lifts (`ranking.evaluation.paired_table`); importance: per variant, the test AUC drop of each feature
    it adds to the baseline when that feature is shuffled."""

    table: pd.DataFrame
    models: dict[str, Ranker]
    predictions: pd.DataFrame
    baseline: str = "baseline"
    attribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    run_ids: dict[str, str] = field(default_factory=dict)
    model_uris: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    experiment_id: str | None = None


def _check_frames(train_frame: pd.DataFrame, test_frame: pd.DataFrame, variants: Mapping[str, VariantSpec],
                  check_time_order: bool) -> None:
    for name, frame in (("train_frame", train_frame), ("test_frame", test_frame)):
        missing = [c for c in KEY_COLUMNS if c not in frame.columns]
        if missing:
            raise KeyError(f"{name} lacks columns {missing}")
        labels = pd.to_numeric(frame["label"], errors="coerce")
        positives = int((labels == 1).sum())
        if not 0 < positives < len(frame):
            what = "is empty" if not len(frame) else f"has {len(frame)} rows of one class ({positives} positive)"
            raise DataError(f"{name} {what}: AUC and log loss are undefined; no ranker is fitted", column="label")
        for v, spec in variants.items():
            lacking = [f for f in spec.features if f not in frame.columns]
            if lacking:
                raise KeyError(f"{name} lacks features {lacking} of variant '{v}'")
    bad = [v for v in variants if v in KEY_COLUMNS]
    if bad:
        raise ValueError(f"variant names {bad} clash with key columns {sorted(KEY_COLUMNS)}")
    if check_time_order and train_frame["event_timestamp"].max() >= test_frame["event_timestamp"].min():
        raise ValueError("train_frame must end before test_frame starts (train on valid, evaluate on test): "
                         f"train max {train_frame['event_timestamp'].max()} >= test min "
                         f"{test_frame['event_timestamp'].min()}; pass check_time_order=False to override")


def run_experiment(
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    variants: Mapping[str, VariantSpec] | None = None,
    mlflow_uri: str | None = None,
    experiment_name: str = "ranking",
    run_tags: Mapping[str, str] | None = None,
    extra_metrics_per_variant: Mapping[str, Mapping[str, float]] | None = None,
    *,
    ranker_configs: Mapping[str, BaseModel] | None = None,
    baseline: str = "baseline",
    baselines: Sequence[str] | None = None,
    ranker_baselines: Mapping[str, str] | None = None,
    attribution: Sequence[tuple[str, str, str]] = (),
    importance_repeats: int = 0,
    comparisons: Mapping[str, str] | None = None,
    segments: Mapping[str, np.ndarray] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    artifact_location: str | None = None,
    log_model: bool = True,
    check_time_order: bool = True,
    params: Mapping[str, Any] | None = None,
    run_key: str | None = None,
) -> ExperimentResult:
    """Fit one ranker per variant on `train_frame`, evaluate on `test_frame`, log to MLflow if `mlflow_uri`.

    Frames carry user_id, item_id, event_timestamp, label and every feature column of every variant.
    ranker_configs: ranker kind -> its config (e.g. {"lgbm": LGBMConfig(...), "dlrm": DLRMConfig(...)}); kinds
    without one use their defaults. baselines: the candidate baselines (variants without match features, e.g. one
    per ranker); the one with the best VALIDATION AUC (each ranker's holdout inside `train_frame`, never the test
    frame) becomes the reference of every lift (default: [baseline]). ranker_baselines: variant -> its own
    ranker's baseline (a second paired difference); attribution: (group, variant, variant without that group)
    triples, reported as paired differences; importance_repeats > 0: permutation importance on the test frame of
    every feature a variant adds to its baseline. seed: the bootstrap's. params: extra MLflow params of every run
    (e.g. how negatives were sampled). run_key: the MLflow runs this experiment replaces
    (`ranking.tracking.log_experiment`; default the experiment name). A frame that is empty or of one class is
    refused before any fit (DataError).
    Returns the comparison table (columns: variant, n_features, best_iteration, n_train, n_test, the metrics of
    `ranking.evaluation.evaluate_variants` (CIs, paired differences vs the baseline, vs each `comparisons`
    reference, per `segments` slice), extra metrics, run_id).
    """
    variants = dict(variants) if variants is not None else default_variants(train_frame.columns)
    if not variants:
        raise ValueError("no variants to run")
    if baseline not in variants:
        first = next(iter(variants))
        logger.warning("baseline variant '%s' not in %s; using '%s'", baseline, list(variants), first)
        baseline = first
    candidates = list(baselines or [baseline])
    unknown = sorted({*candidates, *(ranker_baselines or {}).values(), *[v for t in attribution for v in t[1:]]}
                     - set(variants))
    if unknown:
        raise ValueError(f"baselines, ranker_baselines or attribution name variants that are not run: {unknown}")
    _check_frames(train_frame, test_frame, variants, check_time_order)
    configs = dict(ranker_configs or {})

    models: dict[str, Ranker] = {}
    predictions = test_frame[list(KEY_COLUMNS)].copy()
    for name, spec in variants.items():
        ranker = new_ranker(spec.ranker, configs.get(spec.ranker))
        models[name] = ranker.fit(train_frame, list(spec.features), list(spec.categorical))
        predictions[name] = ranker.predict(test_frame)

    validation = {name: m.fit_info.get("holdout_auc", np.nan) for name, m in models.items()}
    baseline = strongest_baseline(validation, candidates)
    logger.info("strongest baseline by validation AUC: %s (%s)", baseline,
                {c: round(validation[c], 4) for c in candidates})
    y = test_frame["label"].to_numpy(dtype=np.float64)
    users = test_frame["user_id"].to_numpy()
    scored = {v: predictions[v].to_numpy() for v in models}
    metrics = evaluate_variants(y, users, scored, baseline, comparisons=comparisons,
                                ranker_baselines=ranker_baselines, segments=segments, n_bootstrap=n_bootstrap,
                                seed=seed, alpha=alpha)
    metrics.insert(1, "validation_auc", metrics["variant"].map(validation))
    metrics.insert(2, "strongest_baseline", metrics["variant"] == baseline)
    attributed = paired_table(y, users, scored, attribution, n_bootstrap, seed, alpha)
    importance = (_test_importance(models, variants, test_frame, y, ranker_baselines or {}, baseline,
                                   importance_repeats, seed) if importance_repeats else pd.DataFrame())
    extra = {k: dict(v) for k, v in (extra_metrics_per_variant or {}).items()}
    described = pd.DataFrame([{
        "variant": name, "n_features": len(spec.features),
        "best_iteration": models[name].fit_info.get("best_iteration", models[name].fit_info.get("best_epoch")),
        "n_train": models[name].fit_info["n_train"], "n_test": len(test_frame),
    } for name, spec in variants.items()])
    table = described.merge(metrics, on="variant", how="left")
    table = table.join(pd.DataFrame([extra.get(v, {}) for v in table["variant"]], index=table.index))

    result = ExperimentResult(table=table, models=models, predictions=predictions, baseline=baseline,
                              attribution=attributed, importance=importance)
    if mlflow_uri is not None:
        run_params = {
            "n_train": len(train_frame), "n_test": len(test_frame),
            "train_start": str(train_frame["event_timestamp"].min()),
            "train_end": str(train_frame["event_timestamp"].max()),
            "test_start": str(test_frame["event_timestamp"].min()),
            "test_end": str(test_frame["event_timestamp"].max()),
            "n_bootstrap": n_bootstrap, "bootstrap": "user-level cluster, percentile", "seed": seed,
            "baseline": baseline, "baseline_candidates": ",".join(candidates), **dict(params or {}),
        }
        logged = log_experiment(mlflow_uri, experiment_name, table, models, y, predictions, run_params, run_tags,
                                artifact_location, log_model, run_key=run_key,
                                feature_frame=train_frame,
                                report_tables={"attribution": attributed, "importance": importance})
        result.run_ids, result.model_uris = logged.run_ids, logged.model_uris
        result.parent_run_id, result.experiment_id = logged.parent_run_id, logged.experiment_id
        result.table["run_id"] = result.table["variant"].map(result.run_ids)
    return result


def strongest_baseline(validation_auc: Mapping[str, float], candidates: Sequence[str]) -> str:
    """The candidate with the highest validation AUC (ties: the first listed). Refused when a candidate has none:
    choosing on the test period would flatter every lift measured against the choice."""
    missing = [c for c in candidates if not np.isfinite(validation_auc.get(c, np.nan))]
    if missing:
        raise ValueError(f"baselines {missing} have no validation (holdout) AUC to be chosen by")
    return max(candidates, key=lambda c: (validation_auc[c], -list(candidates).index(c)))


def _test_importance(models: Mapping[str, Ranker], variants: Mapping[str, VariantSpec], test_frame: pd.DataFrame,
                     y: np.ndarray, ranker_baselines: Mapping[str, str], baseline: str, n_repeats: int,
                     seed: int) -> pd.DataFrame:
    """variant, feature, permutation_auc_drop on the test frame, for the features each variant adds to its
    ranker's baseline (only those are shuffled)."""
    rows = []
    for name, spec in variants.items():
        ref = ranker_baselines.get(name)
        if ref is None or name == baseline:
            continue
        added = [f for f in spec.features if f not in variants[ref].features]
        drop = permutation_auc_drop(models[name], test_frame, y, _raw_scores, n_repeats, seed, features=added)
        rows += [{"variant": name, "feature": f, "permutation_auc_drop": float(drop[f])} for f in added if f in drop]
    return pd.DataFrame(rows, columns=["variant", "feature", "permutation_auc_drop"])


def _raw_scores(model: Ranker, frame: pd.DataFrame) -> np.ndarray:
    """Scores before calibration where the ranker has them (a calibration may tie scores and hide a drop)."""
    return model.predict_logits(frame) if hasattr(model, "predict_logits") else model.predict(frame)
