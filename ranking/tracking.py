"""MLflow tracking of the ranking experiment: runs, params, metrics, figures and the rankers themselves.

Layout (sqlite backend ``sqlite:///<run_dir>/mlflow.db``, artifacts under ``<run_dir>/mlartifacts``): one
experiment per dataset; a parent run ``comparison`` holding the comparison table and the ROC figure; one nested
run per variant with params (features, categorical, the ranker's config, fit info), metrics (the variant's row of
the comparison table), artifacts (feature_importance.{csv,json,png}, deciles.{csv,png}, roc.png) and the ranker
saved by its own ``save`` under ``<kind>/`` (model URI ``runs:/<run_id>/<kind>``, reloaded by
:func:`load_logged_ranker`). ``log_lifetime`` later adds the simulator's LT7/LT14 metrics to the same runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranking import plots
from ranking.ranker import Ranker
from ranking.registry import load_ranker

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

logger = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
"""MLflow's limit on a param value (longer ones are cut, marked)."""


def mlflow_uri_for(run_dir: str | Path) -> str:
    """The tracking URI of a run directory: sqlite:///<run_dir>/mlflow.db (absolute path)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def artifact_root_for(mlflow_uri: str) -> str:
    """<run_dir>/mlartifacts as a file URI for a sqlite:///<run_dir>/mlflow.db tracking URI."""
    if not mlflow_uri.startswith("sqlite:///"):
        raise ValueError(f"cannot derive an artifact location from {mlflow_uri!r}; pass artifact_location")
    root = Path(mlflow_uri[len("sqlite:///"):]).parent / "mlartifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve().as_uri()


@contextlib.contextmanager
def tracking(mlflow_uri: str) -> Iterator[None]:
    """Point the fluent MLflow API at `mlflow_uri` for the block, then restore the previous URI."""
    import mlflow

    if mlflow_uri.startswith("sqlite:///"):
        Path(mlflow_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def get_or_create_experiment(mlflow_uri: str, name: str, artifact_location: str | None = None) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location or artifact_root_for(mlflow_uri))


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries, keys made MLflow-safe (other characters -> '_')."""
    out = {}
    for k, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(f):
            out[re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(k))] = f
    return out


def _param(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= MAX_PARAM_CHARS else s[:MAX_PARAM_CHARS - 10] + "...(cut)"


@dataclass
class LoggedExperiment:
    experiment_id: str
    parent_run_id: str
    run_ids: dict[str, str] = field(default_factory=dict)       # variant -> run id
    model_uris: dict[str, str] = field(default_factory=dict)    # variant -> runs:/<run_id>/<kind>


def _variant_artifacts(directory: Path, name: str, ranker: Ranker, y: np.ndarray, scores: np.ndarray) -> None:
    imp = ranker.feature_importance()
    imp.rename_axis("feature").reset_index().to_csv(directory / "feature_importance.csv", index=False)
    (directory / "feature_importance.json").write_text(json.dumps({k: float(v) for k, v in imp.items()}, indent=1))
    plots.save(plots.importance_figure(imp, f"{name}: feature importance ({imp.name})"),
               directory / "feature_importance.png")
    deciles = plots.decile_table(y, scores)
    deciles.to_csv(directory / "deciles.csv", index=False)
    plots.save(plots.decile_figure(deciles, name), directory / "deciles.png")


def log_experiment(mlflow_uri: str, experiment_name: str, table: pd.DataFrame, rankers: Mapping[str, Ranker],
                   y: np.ndarray, predictions: pd.DataFrame, params: Mapping[str, Any],
                   tags: Mapping[str, str] | None = None, artifact_location: str | None = None,
                   log_model: bool = True) -> LoggedExperiment:
    """A parent run with the comparison table and ROC figure, and one nested run per variant (see module doc).

    table: one row per variant (column `variant`); predictions: one score column per variant over the test rows
    with labels `y`; params: logged on every run (what the experiment was: sizes, periods, bootstrap, seed).
    """
    import mlflow

    tags = dict(tags or {})
    exp_id = get_or_create_experiment(mlflow_uri, experiment_name, artifact_location)
    with tracking(mlflow_uri), tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        roc_path = plots.save(plots.roc_figure(y, {v: predictions[v].to_numpy() for v in rankers}), tmp / "roc.png")
        with mlflow.start_run(experiment_id=exp_id, run_name="comparison", tags={**tags, "role": "comparison"},
                              nested=mlflow.active_run() is not None) as parent:
            logged = LoggedExperiment(exp_id, parent.info.run_id)
            mlflow.log_params({k: _param(v) for k, v in {**params, "variants": list(rankers)}.items()})
            table.to_csv(tmp / "comparison.csv", index=False)
            mlflow.log_artifact(str(tmp / "comparison.csv"))
            mlflow.log_artifact(str(roc_path))
            for _, row in table.iterrows():
                name = row["variant"]
                ranker = rankers[name]
                with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True,
                                      tags={**tags, "variant": name, "role": "variant"}) as run:
                    logged.run_ids[name] = run.info.run_id
                    run_params = {**params, "variant": name, "ranker": ranker.kind, "features": ranker.features,
                                  "categorical": ranker.categorical, "n_features": len(ranker.features),
                                  **{f"{ranker.kind}.{k}": v for k, v in ranker.config.model_dump().items()},
                                  **{f"fit.{k}": v for k, v in ranker.fit_info.items()}}
                    mlflow.log_params({k: _param(v) for k, v in run_params.items()})
                    mlflow.log_metrics(finite_metrics({k: v for k, v in row.items() if k != "variant"}))
                    vdir = tmp / name
                    vdir.mkdir()
                    _variant_artifacts(vdir, name, ranker, y, predictions[name].to_numpy())
                    for f in sorted(vdir.iterdir()):
                        mlflow.log_artifact(str(f))
                    mlflow.log_artifact(str(roc_path))
                    if log_model:
                        saved = ranker.save(tmp / f"{name}-model")
                        mlflow.log_artifacts(str(saved), artifact_path=ranker.kind)
                        logged.model_uris[name] = f"runs:/{run.info.run_id}/{ranker.kind}"
                        mlflow.set_tag("model_uri", logged.model_uris[name])
            mlflow.log_metrics(finite_metrics({f"{r['variant']}.{m}": r[m] for _, r in table.iterrows()
                                               for m in ("auc", "gauc", "logloss")}))
    return logged


def log_run_metrics(mlflow_uri: str, run_id: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Add the finite entries of `metrics` to an existing run (e.g. embedding metrics to the comparison run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    logged = finite_metrics(metrics)
    for k, v in logged.items():
        client.log_metric(run_id, k, v)
    return logged


def load_logged_ranker(model_uri: str, mlflow_uri: str) -> Ranker:
    """The ranker logged at `model_uri` (``runs:/<run_id>/<kind>``, ExperimentResult.model_uris[variant] and the
    run's ``model_uri`` tag), resolved against `mlflow_uri` (required: MLflow's default URI would create
    ./mlflow.db in the cwd)."""
    import mlflow

    kind = model_uri.rstrip("/").rsplit("/", 1)[-1]
    with tracking(mlflow_uri):
        local = mlflow.artifacts.download_artifacts(model_uri)
    return load_ranker(kind, local)


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
    return {k: finite_metrics(v) for k, v in out.items()}


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
