"""MLflow tracking of the ranking experiment: runs, params, metrics, figures and the rankers themselves.

Layout (sqlite backend ``sqlite:///<run_dir>/mlflow.db``, artifacts under ``<run_dir>/mlartifacts``): one
experiment per dataset; a parent run ``comparison`` holding the comparison table and the ROC figure; one nested
run per variant with params (features, categorical, the ranker's config, fit info), metrics (the variant's row of
the comparison table), artifacts (feature_importance.{csv,json,png}, deciles.{csv,png}, roc.png) and the ranker as
an MLflow model named ``<kind>`` (``ranking.pyfunc``: the ranker's own save directory, a signature inferred from
the training frame's features and the predictions, an input example; model URI ``runs:/<run_id>/<kind>``, so
``mlflow.pyfunc.load_model(uri).predict(frame)`` equals ``ranker.predict(frame)``; :func:`load_logged_ranker`
returns the project's Ranker). ``log_lifetime`` later adds the simulator's LT7/LT14 metrics to the same runs.

Idempotent per run key (tag ``run_key``, default the experiment name): before logging, runs of the key left
RUNNING or FAILED (a crash, a kill) are deleted; after logging, the key's previous runs are deleted, with their
logged models, so rerunning the ranking stage of a run directory leaves one set of runs. An exception while
logging ends the runs FAILED (never RUNNING).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranking import plots
from ranking.pyfunc import ARTIFACT, ENTRY_POINT, RankerModel, model_input
from ranking.ranker import Ranker

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

logger = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
"""MLflow's limit on a param value (longer ones are cut, marked)."""
RUN_KEY_TAG = "run_key"
UNFINISHED = ("RUNNING", "SCHEDULED", "FAILED", "KILLED")
INPUT_EXAMPLE_ROWS = 5


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


def _runs_of_key(client, exp_id: str, key: str) -> list:
    quoted = key.replace("\\", "\\\\").replace("'", "\\'")
    return list(client.search_runs([exp_id], filter_string=f"tags.{RUN_KEY_TAG} = '{quoted}'", max_results=50_000))


def _discard(client, exp_id: str, runs: list) -> None:
    """Delete `runs` and the MLflow models logged from them."""
    for run in runs:
        for model in client.search_logged_models([exp_id], filter_string=f"source_run_id = '{run.info.run_id}'"):
            client.delete_logged_model(model.model_id)
        client.delete_run(run.info.run_id)


def _requirements(kind: str) -> list[str]:
    """The pinned distributions a logged ranker of `kind` imports (given, so MLflow does not infer them in a
    subprocess); looked up by module, so a CPU or GPU build of a package pins what is installed."""
    from importlib.metadata import packages_distributions, version

    modules = ["mlflow", "numpy", "pandas", "sklearn"]
    modules += ["lightgbm"] if kind == "lgbm" else ["torch", "torchrec", "fbgemm_gpu", "safetensors", "skops", "scipy"]
    dists = packages_distributions()
    return [f"{dist}=={version(dist)}" for dist in (dists[m][0] for m in modules)]


def log_ranker_model(ranker: Ranker, feature_frame: pd.DataFrame, directory: Path) -> str:
    """Log `ranker` as an MLflow model named after its kind in the active run; returns ``runs:/<run_id>/<kind>``.

    The signature comes from `feature_frame`'s features (as `ranking.pyfunc.model_input` passes them) and the
    ranker's predictions on its first rows, which are also the input example.
    """
    import mlflow
    from mlflow.models import infer_signature

    saved = ranker.save(directory)
    inputs = model_input(feature_frame, ranker.features)
    example = inputs.head(INPUT_EXAMPLE_ROWS)
    with warnings.catch_warnings():
        # integer ids stay `long` on purpose: exact for 64-bit ids, and a missing id fails the schema loudly
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        signature = infer_signature(inputs, ranker.predict(example))
    mlflow.pyfunc.log_model(name=ranker.kind, python_model=str(ENTRY_POINT), artifacts={ARTIFACT: str(saved)},
                            model_config={"kind": ranker.kind}, input_example=example, signature=signature,
                            pip_requirements=_requirements(ranker.kind))
    return f"runs:/{mlflow.active_run().info.run_id}/{ranker.kind}"


def log_experiment(mlflow_uri: str, experiment_name: str, table: pd.DataFrame, rankers: Mapping[str, Ranker],
                   y: np.ndarray, predictions: pd.DataFrame, params: Mapping[str, Any],
                   tags: Mapping[str, str] | None = None, artifact_location: str | None = None,
                   log_model: bool = True, *, run_key: str | None = None,
                   feature_frame: pd.DataFrame | None = None,
                   report_tables: Mapping[str, pd.DataFrame] | None = None) -> LoggedExperiment:
    """A parent run with the comparison table and ROC figure, and one nested run per variant (see module doc).

    table: one row per variant (column `variant`); predictions: one score column per variant over the test rows
    with labels `y`; params: logged on every run (what the experiment was: sizes, periods, bootstrap, seed).
    run_key: which earlier runs this replaces (default `experiment_name`). feature_frame: the frame the rankers
    were fitted on (the models' signatures and input examples; required with `log_model`). report_tables: name ->
    table logged on the parent run as <name>.csv (e.g. attribution, importance); the parent also gets a forest
    plot of every lift against the strongest baseline.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    if log_model and feature_frame is None:
        raise ValueError("log_model needs the feature_frame the rankers were fitted on (signature, input example)")
    key = run_key or experiment_name
    tags = {**dict(tags or {}), RUN_KEY_TAG: key}
    exp_id = get_or_create_experiment(mlflow_uri, experiment_name, artifact_location)
    client = MlflowClient(tracking_uri=mlflow_uri)
    _discard(client, exp_id, [r for r in _runs_of_key(client, exp_id, key) if r.info.status in UNFINISHED])
    previous = _runs_of_key(client, exp_id, key)
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
            for name, frame in (report_tables or {}).items():
                frame.to_csv(tmp / f"{name}.csv", index=False)
                mlflow.log_artifact(str(tmp / f"{name}.csv"))
            if "auc_diff_vs_baseline_lo" in table:
                mlflow.log_artifact(str(plots.save(plots.lift_figure(
                    table, "auc_diff_vs_baseline", f"ΔAUC vs the strongest baseline ({params.get('baseline')})"),
                    tmp / "lifts.png")))
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
                        assert feature_frame is not None
                        logged.model_uris[name] = log_ranker_model(ranker, feature_frame, tmp / f"{name}-model")
                        mlflow.set_tag("model_uri", logged.model_uris[name])
            mlflow.log_metrics(finite_metrics({f"{r['variant']}.{m}": r[m] for _, r in table.iterrows()
                                               for m in ("auc", "gauc", "logloss")}))
    _discard(client, exp_id, previous)
    return logged


def log_run_metrics(mlflow_uri: str, run_id: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Add the finite entries of `metrics` to an existing run (e.g. embedding metrics to the comparison run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    logged = finite_metrics(metrics)
    for k, v in logged.items():
        client.log_metric(run_id, k, v)
    return logged


def log_figures(mlflow_uri: str, run_id: str, figures: Mapping[str, Any]) -> None:
    """Add matplotlib figures to an existing run as artifacts ({artifact file: figure})."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    for name, fig in figures.items():
        client.log_figure(run_id, fig, name)


def load_logged_ranker(model_uri: str, mlflow_uri: str) -> Ranker:
    """The project's Ranker inside the MLflow model at `model_uri` (``runs:/<run_id>/<kind>``,
    ExperimentResult.model_uris[variant] and the run's ``model_uri`` tag), resolved against `mlflow_uri` (required:
    MLflow's default URI would create ./mlflow.db in the cwd)."""
    import mlflow

    with tracking(mlflow_uri), tempfile.TemporaryDirectory() as tmp:  # the ranker loads fully into memory
        model = mlflow.pyfunc.load_model(model_uri, dst_path=tmp)
    wrapped = model.unwrap_python_model()
    if not isinstance(wrapped, RankerModel):
        raise ValueError(f"{model_uri} is not a logged ranker (its python model is a {type(wrapped).__name__})")
    return wrapped.ranker


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
