"""Ranking experiment: feature-set variants -> LightGBM rankers -> test metrics with CIs -> MLflow runs.

Protocol (see ranking.examples): rankers train on the VALID-period frame (features point-in-time) with early
stopping on its latest 20% by time, and are evaluated on the TEST-period frame. Every variant is scored on the
same test examples, so differences vs the baseline use a paired user-level bootstrap (same user resamples).

Default variants (``default_variants``):
  - ``baseline``:  ids (user_id, item_id as categorical) + item/user statistics
  - ``match``:     baseline + match features (user history x candidate similarities; our own definition)
  - ``match_sid``: match + candidate semantic IDs (sid_k categorical) and sid_*_match_l* flags

MLflow layout (sqlite backend ``sqlite:///<run_dir>/mlflow.db``, artifacts under ``<run_dir>/mlartifacts``):
one experiment per dataset (``experiment_name``); a parent run ``comparison`` holding the comparison table and
the ROC figure; one nested run per variant with params (features, categorical, LightGBM params, fit info),
metrics (auc/gauc/logloss with _lo/_hi, gauc coverage, *_diff_vs_baseline with _lo/_hi, extra metrics), and
artifacts (feature_importance.{csv,json,png}, deciles.csv, deciles.png, roc.png) and the LightGBM model
(``mlflow.lightgbm.log_model``; reload with :func:`load_logged_ranker`). ``log_lifetime`` later adds the
simulator's LT7/LT14 metrics to the same variant runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from ranking import plots
from ranking.lgbm import LGBMConfig, LGBMRanker
from ranking.metrics import METRICS, bootstrap_ci, gauc_report, paired_bootstrap_diff

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

logger = logging.getLogger(__name__)

ID_FEATURES: tuple[str, ...] = ("user_id", "item_id")
DEFAULT_STAT_FEATURES: tuple[str, ...] = (
    "item_impressions", "item_positives", "item_positive_rate",
    "user_impressions", "user_positives", "user_positive_rate", "hist_len",
)
DEFAULT_MATCH_FEATURES: tuple[str, ...] = (
    "cos_mean", "cos_recency", "cos_last", "cos_centroid_max", "cos_centroid_wavg", "hist_sim_count",
)
SID_PATTERN = re.compile(r"^sid_\d+$")
SID_MATCH_PATTERN = re.compile(r"^sid_\w+_match_l\d+$")
KEY_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_timestamp", "label")
_PIP_REQUIREMENTS = [f"lightgbm=={lgb.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


RANKERS = ("lgbm", "dlrm")


@dataclass(frozen=True)
class VariantSpec:
    """One feature set: `features` in model order; `categorical` is the subset treated as categories.

    ranker: "lgbm" (ranking.lgbm.LGBMRanker) or "dlrm" (ranking.dlrm.DLRMRanker, TorchRec).
    """

    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    ranker: str = "lgbm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        if self.ranker not in RANKERS:
            raise ValueError(f"unknown ranker '{self.ranker}'; choose one of {RANKERS}")
        extra = [c for c in self.categorical if c not in self.features]
        if extra:
            raise ValueError(f"categorical {extra} not in features {list(self.features)}")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"duplicate features in {list(self.features)}")


def default_variants(columns: Iterable[str], stat_features: Sequence[str] = DEFAULT_STAT_FEATURES,
                     match_features: Sequence[str] = DEFAULT_MATCH_FEATURES,
                     include_ids: bool = True) -> dict[str, VariantSpec]:
    """baseline / match / match_sid from the columns present in the feature frame.

    Listed features missing from `columns` are skipped (logged); a variant that adds nothing over the previous
    one is left out.
    """
    cols = list(columns)
    present = set(cols)
    ids = [c for c in ID_FEATURES if include_ids and c in present]
    stats = [c for c in stat_features if c in present]
    match = [c for c in match_features if c in present]
    missing = [c for c in (*stat_features, *match_features) if c not in present]
    if missing:
        logger.info("default_variants: features not in the frame, skipped: %s", missing)
    sids = [c for c in cols if SID_PATTERN.match(c)]
    sid_match = [c for c in cols if SID_MATCH_PATTERN.match(c)]
    if not ids and not stats:
        raise ValueError(f"no baseline features (ids or statistics) among columns {cols}")
    out = {"baseline": VariantSpec((*ids, *stats), tuple(ids))}
    if match:
        out["match"] = VariantSpec((*ids, *stats, *match), tuple(ids))
    if sids or sid_match:
        prev = out.get("match", out["baseline"])
        out["match_sid"] = VariantSpec((*prev.features, *sids, *sid_match), (*ids, *sids))
    return out


@dataclass
class ExperimentResult:
    """table: one row per variant; predictions: test keys + one score column per variant name."""

    table: pd.DataFrame
    models: dict[str, LGBMRanker]
    predictions: pd.DataFrame
    run_ids: dict[str, str] = field(default_factory=dict)
    model_uris: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    experiment_id: str | None = None


# ------------------------------------------------------------------------------------------- mlflow glue


def mlflow_uri_for(run_dir: str | Path) -> str:
    """The tracking URI of a run directory: sqlite:///<run_dir>/mlflow.db (absolute path)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def artifact_root_for(mlflow_uri: str) -> str:
    """<run_dir>/mlartifacts as a file URI for a sqlite:///<run_dir>/mlflow.db tracking URI."""
    if not mlflow_uri.startswith("sqlite:///"):
        raise ValueError(f"cannot derive an artifact location from {mlflow_uri!r}; pass artifact_location")
    db = Path(mlflow_uri[len("sqlite:///"):])
    root = db.parent / "mlartifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve().as_uri()


@contextlib.contextmanager
def _tracking(mlflow_uri: str) -> Iterator[None]:
    """Point the fluent MLflow API at `mlflow_uri` for the block, then restore the previous URI."""
    import mlflow

    if mlflow_uri.startswith("sqlite:///"):
        Path(mlflow_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    prev_uri = mlflow.get_tracking_uri() if previous is None else previous
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(prev_uri)


def get_or_create_experiment(mlflow_uri: str, name: str, artifact_location: str | None = None) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location or artifact_root_for(mlflow_uri))


def _metric_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(name))


def _finite_metrics(d: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(f):
            out[_metric_key(k)] = f
    return out


def _param(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= 6000 else s[:5990] + "...(cut)"


def load_logged_ranker(model_uri: str, mlflow_uri: str):
    """Reload a ranker logged by run_experiment: the booster via mlflow.lightgbm plus its saved metadata, or a
    DLRM from its logged directory (``runs:/<id>/dlrm``).

    `model_uri` is ExperimentResult.model_uris[variant] (``models:/m-...``, also the run's ``model_uri`` tag),
    resolved against `mlflow_uri` (required: MLflow's default URI would create ./mlflow.db in the cwd).
    """
    import mlflow.lightgbm
    from mlflow.models import get_model_info

    if model_uri.startswith("runs:/") and model_uri.rstrip("/").endswith("/dlrm"):
        from ranking.dlrm import DLRMRanker

        with _tracking(mlflow_uri):
            local = mlflow.artifacts.download_artifacts(model_uri)
        return DLRMRanker.load(local)
    with _tracking(mlflow_uri):
        booster = mlflow.lightgbm.load_model(model_uri)
        meta = get_model_info(model_uri).metadata or {}
    return LGBMRanker.from_booster(booster, meta)


# ---------------------------------------------------------------------------------------- experiment


def _check_frames(train_frame: pd.DataFrame, test_frame: pd.DataFrame, variants: Mapping[str, VariantSpec],
                  check_time_order: bool) -> None:
    for name, frame in (("train_frame", train_frame), ("test_frame", test_frame)):
        missing = [c for c in KEY_COLUMNS if c not in frame.columns]
        if missing:
            raise KeyError(f"{name} lacks columns {missing}")
        if len(frame) == 0:
            raise ValueError(f"{name} is empty")
        for v, spec in variants.items():
            lacking = [f for f in spec.features if f not in frame.columns]
            if lacking:
                raise KeyError(f"{name} lacks features {lacking} of variant '{v}'")
    reserved = set(KEY_COLUMNS)
    bad = [v for v in variants if v in reserved]
    if bad:
        raise ValueError(f"variant names {bad} clash with key columns {sorted(reserved)}")
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
    config: LGBMConfig | None = None,
    dlrm_config=None,
    baseline: str = "baseline",
    comparisons: Mapping[str, str] | None = None,
    segments: Mapping[str, np.ndarray] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    artifact_location: str | None = None,
    log_model: bool = True,
    check_time_order: bool = True,
) -> ExperimentResult:
    """Fit one ranker per variant on `train_frame`, evaluate on `test_frame`, log to MLflow if `mlflow_uri`.

    Frames carry user_id, item_id, event_timestamp, label and every feature column of every variant.
    Returns the comparison table (columns: variant, n_features, auc, auc_lo, auc_hi, gauc, gauc_lo, gauc_hi,
    gauc_users, gauc_user_coverage, gauc_impression_coverage, logloss, logloss_lo, logloss_hi,
    {auc,gauc,logloss}_diff_vs_baseline(+_lo/_hi), best_iteration, n_train, n_test, extra metrics, run_id).
    `comparisons` (variant -> reference variant) add paired differences {auc,gauc}_diff_vs_ref(+_lo/_hi) and
    `ref_variant`, e.g. CRE match features vs content-only ones. `segments` (name -> bool mask over test rows,
    e.g. cold-start items) add auc_<name>(+_lo/_hi) and n_<name>: each variant's AUC on that slice.
    """
    variants = dict(variants) if variants is not None else default_variants(train_frame.columns)
    if not variants:
        raise ValueError("no variants to run")
    if baseline not in variants:
        first = next(iter(variants))
        logger.warning("baseline variant '%s' not in %s; using '%s'", baseline, list(variants), first)
        baseline = first
    _check_frames(train_frame, test_frame, variants, check_time_order)
    config = config or LGBMConfig(seed=seed)
    extra = {k: dict(v) for k, v in (extra_metrics_per_variant or {}).items()}

    y = test_frame["label"].to_numpy(dtype=np.float64)
    users = test_frame["user_id"].to_numpy()
    models: dict[str, LGBMRanker] = {}
    preds: dict[str, np.ndarray] = {}
    rows: list[dict] = []
    for name, spec in variants.items():
        ranker = _make_ranker(spec, config, dlrm_config).fit(train_frame, list(spec.features), list(spec.categorical))
        p = ranker.predict(test_frame)
        models[name], preds[name] = ranker, p
        row: dict = {"variant": name, "n_features": len(spec.features)}
        for mname, fn in METRICS.items():
            point, lo, hi = bootstrap_ci(fn, y, p, users, n=n_bootstrap, seed=seed, alpha=alpha)
            row.update({mname: point, f"{mname}_lo": lo, f"{mname}_hi": hi})
        row.update({k: v for k, v in gauc_report(y, p, users).items() if k != "gauc"})
        rows.append(row)
    for row in rows:
        name = row["variant"]
        for mname, fn in METRICS.items():
            key = f"{mname}_diff_vs_{baseline}"
            if name == baseline:
                row.update({key: np.nan, f"{key}_lo": np.nan, f"{key}_hi": np.nan})
                continue
            d, lo, hi = paired_bootstrap_diff(fn, y, preds[name], preds[baseline], users, n=n_bootstrap,
                                              seed=seed, alpha=alpha)
            row.update({key: d, f"{key}_lo": lo, f"{key}_hi": hi})
        info = models[name].fit_info
        row.update(best_iteration=info.get("best_iteration", info.get("best_epoch")), n_train=info["n_train"],
                   n_test=len(test_frame))
        row.update(extra.get(name, {}))
    _add_comparisons(rows, preds, y, users, dict(comparisons or {}), n_bootstrap, seed, alpha)
    _add_segments(rows, preds, y, users, dict(segments or {}), n_bootstrap, seed, alpha)
    table = pd.DataFrame(rows)
    predictions = test_frame[list(KEY_COLUMNS)].copy()
    for name, p in preds.items():
        predictions[name] = p

    result = ExperimentResult(table=table, models=models, predictions=predictions)
    if mlflow_uri is not None:
        _log_to_mlflow(result, variants, y, mlflow_uri, experiment_name, dict(run_tags or {}), config, baseline,
                       artifact_location, log_model, n_bootstrap, seed, train_frame, test_frame)
        result.table["run_id"] = result.table["variant"].map(result.run_ids)
    return result


def _add_comparisons(rows: list[dict], preds: dict[str, np.ndarray], y: np.ndarray, users: np.ndarray,
                     comparisons: dict[str, str], n_bootstrap: int, seed: int, alpha: float) -> None:
    """Paired user-bootstrap differences of each variant against its reference (same resamples for both)."""
    unknown = sorted({*comparisons, *comparisons.values()} - set(preds))
    if unknown:
        raise ValueError(f"comparisons name variants that were not run: {unknown}")
    for row in rows:
        ref = comparisons.get(row["variant"])
        row["ref_variant"] = ref
        for mname in ("auc", "gauc"):
            key = f"{mname}_diff_vs_ref"
            if ref is None:
                row.update({key: np.nan, f"{key}_lo": np.nan, f"{key}_hi": np.nan})
                continue
            d, lo, hi = paired_bootstrap_diff(METRICS[mname], y, preds[row["variant"]], preds[ref], users,
                                              n=n_bootstrap, seed=seed, alpha=alpha)
            row.update({key: d, f"{key}_lo": lo, f"{key}_hi": hi})


def _add_segments(rows: list[dict], preds: dict[str, np.ndarray], y: np.ndarray, users: np.ndarray,
                  segments: dict[str, np.ndarray], n_bootstrap: int, seed: int, alpha: float) -> None:
    """AUC (user-bootstrap CI) of every variant on each slice of the test rows; NaN where one class only."""
    for seg, mask in segments.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != y.shape:
            raise ValueError(f"segment {seg!r}: mask has shape {mask.shape}, the test frame {y.shape}")
        both = mask.any() and len(np.unique(y[mask])) == 2
        for row in rows:
            row[f"n_{seg}"] = int(mask.sum())
            if not both:
                row.update({f"auc_{seg}": np.nan, f"auc_{seg}_lo": np.nan, f"auc_{seg}_hi": np.nan})
                continue
            point, lo, hi = bootstrap_ci(METRICS["auc"], y[mask], preds[row["variant"]][mask], users[mask],
                                         n=n_bootstrap, seed=seed, alpha=alpha)
            row.update({f"auc_{seg}": point, f"auc_{seg}_lo": lo, f"auc_{seg}_hi": hi})


def _make_ranker(spec: VariantSpec, config: LGBMConfig, dlrm_config):
    if spec.ranker == "dlrm":
        from ranking.dlrm import DLRMRanker

        return DLRMRanker(dlrm_config, seed=config.seed)
    return LGBMRanker(config)


def _importance_frame(ranker) -> pd.DataFrame:
    """feature, gain (LightGBM gain; for DLRM the holdout AUC drop under permutation), split."""
    imp = ranker.feature_importance()
    if isinstance(imp, pd.DataFrame):
        return imp
    items = sorted((imp or {}).items(), key=lambda kv: -kv[1])
    return pd.DataFrame({"feature": [k for k, _ in items], "gain": [float(v) for _, v in items],
                         "split": np.nan})


def _log_to_mlflow(result: ExperimentResult, variants: Mapping[str, VariantSpec], y: np.ndarray, mlflow_uri: str,
                   experiment_name: str, tags: dict, config: LGBMConfig, baseline: str,
                   artifact_location: str | None, log_model: bool, n_bootstrap: int, seed: int,
                   train_frame: pd.DataFrame, test_frame: pd.DataFrame) -> None:
    import mlflow
    import mlflow.lightgbm

    exp_id = get_or_create_experiment(mlflow_uri, experiment_name, artifact_location)
    result.experiment_id = exp_id
    table = result.table
    aucs = dict(zip(table["variant"], table["auc"]))
    common_params = {
        "n_train": len(train_frame), "n_test": len(test_frame),
        "train_start": str(train_frame["event_timestamp"].min()),
        "train_end": str(train_frame["event_timestamp"].max()),
        "test_start": str(test_frame["event_timestamp"].min()),
        "test_end": str(test_frame["event_timestamp"].max()),
        "n_bootstrap": n_bootstrap, "bootstrap": "user-level cluster, percentile", "seed": seed,
        "baseline": baseline,
    }
    with _tracking(mlflow_uri), tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roc_path = plots.save(plots.roc_figure(y, dict(result.predictions[list(variants)].items()), aucs),
                              tmp / "roc.png")
        parent_tags = {**tags, "role": "comparison"}
        with mlflow.start_run(experiment_id=exp_id, run_name="comparison", tags=parent_tags,
                              nested=mlflow.active_run() is not None) as parent:
            result.parent_run_id = parent.info.run_id
            mlflow.log_params({k: _param(v) for k, v in {**common_params, "variants": list(variants)}.items()})
            table.to_csv(tmp / "comparison.csv", index=False)
            mlflow.log_artifact(str(tmp / "comparison.csv"))
            mlflow.log_artifact(str(roc_path))
            for _, row in table.iterrows():
                name = row["variant"]
                spec, ranker = variants[name], result.models[name]
                vdir = tmp / name
                vdir.mkdir()
                with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True,
                                      tags={**tags, "variant": name, "role": "variant"}) as run:
                    result.run_ids[name] = run.info.run_id
                    ranker_cfg = (config if spec.ranker == "lgbm" else ranker.cfg).model_dump()
                    params = {**common_params, "variant": name, "ranker": spec.ranker,
                              "features": list(spec.features),
                              "categorical": list(spec.categorical), "n_features": len(spec.features),
                              **{f"{spec.ranker}.{k}": v for k, v in ranker_cfg.items()},
                              **{f"fit.{k}": v for k, v in ranker.fit_info.items()}}
                    mlflow.log_params({k: _param(v) for k, v in params.items()})
                    metrics = {k: v for k, v in row.items() if k not in ("variant",)}
                    mlflow.log_metrics(_finite_metrics(metrics))
                    imp = _importance_frame(ranker)
                    imp.to_csv(vdir / "feature_importance.csv", index=False)
                    (vdir / "feature_importance.json").write_text(
                        json.dumps(dict(zip(imp["feature"], imp["gain"].astype(float))), indent=1))
                    plots.save(plots.importance_figure(imp, f"{name}: feature importance (gain)"),
                               vdir / "feature_importance.png")
                    dec = plots.decile_table(y, result.predictions[name].to_numpy())
                    dec.to_csv(vdir / "deciles.csv", index=False)
                    plots.save(plots.decile_figure(dec, name), vdir / "deciles.png")
                    if hasattr(ranker, "metadata_json"):
                        (vdir / "ranker.json").write_text(ranker.metadata_json())
                    for f in sorted(vdir.iterdir()):
                        mlflow.log_artifact(str(f))
                    mlflow.log_artifact(str(roc_path))
                    if log_model and spec.ranker == "dlrm":
                        ranker.save(tmp / f"{name}-dlrm")
                        mlflow.log_artifacts(str(tmp / f"{name}-dlrm"), artifact_path="dlrm")
                        result.model_uris[name] = f"runs:/{run.info.run_id}/dlrm"
                        mlflow.set_tag("model_uri", result.model_uris[name])
                    elif log_model:
                        # explicit requirements: inferring them spawns a subprocess that reloads the model (slow)
                        info = mlflow.lightgbm.log_model(ranker.booster, name="model", metadata=ranker.metadata(),
                                                         pip_requirements=_PIP_REQUIREMENTS)
                        result.model_uris[name] = info.model_uri
                        mlflow.set_tag("model_uri", info.model_uri)
            mlflow.log_metrics(_finite_metrics({f"{r['variant']}.{m}": r[m] for _, r in table.iterrows()
                                                for m in ("auc", "gauc", "logloss")}))


# --------------------------------------------------------------------------------------------- lifetime


def _lifetime_metrics(lt_table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """variant -> {metric: value} from a wide (one row per policy) or long (policy, metric, value, lo, hi) table."""
    df = lt_table.copy()
    key = next((c for c in ("variant", "policy", "name") if c in df.columns), None)
    if key is None:
        df = df.reset_index()
        key = df.columns[0]
    out: dict[str, dict[str, float]] = {}
    if "metric" in df.columns and "value" in df.columns:
        suffix = {"value": "", "lo": "_lo", "hi": "_hi", "ci_lo": "_lo", "ci_hi": "_hi", "std": "_std",
                  "se": "_se"}
        for _, r in df.iterrows():
            m = out.setdefault(str(r[key]), {})
            for col, suf in suffix.items():
                if col in df.columns:
                    m[f"{str(r['metric']).lower()}{suf}"] = r[col]
    else:
        num = [c for c in df.columns if c != key and pd.api.types.is_numeric_dtype(df[c])]
        for _, r in df.iterrows():
            out[str(r[key])] = {str(c).lower(): r[c] for c in num}
    return {k: _finite_metrics(v) for k, v in out.items()}


def log_lifetime(mlflow_uri: str, experiment_name: str, run_ids_by_variant: Mapping[str, str],
                 lt_table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Add lifetime metrics (LT7/LT14 and their CIs) from the simulator to the variant runs, after the fact.

    `lt_table`: one row per policy (column variant/policy/name, or the index) with numeric columns such as
    lt7, lt7_lo, lt7_hi, lt14, ... (logged lower-cased under their column names), or a long table with
    columns policy, metric, value[, lo, hi]. Policies without a run (e.g. random, popularity) are skipped.
    The whole table is also attached to each run as lifetime.csv. Returns what was logged per variant.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        raise ValueError(f"no MLflow experiment named {experiment_name!r} at {mlflow_uri}")
    per_variant = _lifetime_metrics(lt_table)
    logged: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "lifetime.csv"
        lt_table.to_csv(csv, index=lt_table.index.name is not None)
        for variant, run_id in run_ids_by_variant.items():
            run = client.get_run(run_id)
            if run.info.experiment_id != exp.experiment_id:
                raise ValueError(f"run {run_id} of variant {variant!r} is not in experiment {experiment_name!r}")
            metrics = per_variant.get(variant)
            if metrics is None:
                logger.warning("log_lifetime: no lifetime row for variant %r (policies: %s)", variant,
                               list(per_variant))
                continue
            for k, v in metrics.items():
                client.log_metric(run_id, k, v)
            client.log_artifact(run_id, str(csv))
            logged[variant] = metrics
    return logged
