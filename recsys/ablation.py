"""Ablations of a finished run: one component switched off (or swapped) at a time, rerun in a scratch copy from
the earliest stage it affects up to the ranking stage, compared with the full run on the same test examples.

    <run_dir>/ablations/<component>/   a run directory: the stages before the component's are the full run's
                                       (their markers are copied and their artefacts read in place), the rest rerun
    <run_dir>/ablation.json, ablation.md, and an "Ablations" section in results.md

A component is a set of config overrides (`COMPONENTS`; each test checks that it changes exactly its own keys). For
each one the table gives, per variant, the change of its test AUC (ablated - full, paired over users) and its lift
against the strongest baseline in the ablated run, next to the full run's; the change of each retrieval
evaluator's primary metric in the content and CRE stages it reran, paired over the queries both runs scored (their
`retrieval_queries.parquet`); and the seconds the rerun took. The match-feature groups need no rerun: they are
the full run's drop-group rows. A recipe option the run does not use (no hard negatives to switch off, no
patterns) or a missing modality its items do not have is refused with a ConfigError, not rerun as a copy of the
full run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedding.evaluate import RETRIEVAL_QUERIES, compare_query_tables
from ranking.metrics import METRICS, paired_bootstrap_diff
from recsys.config import RunConfig
from recsys.config_io import load_model
from recsys.errors import ConfigError, DataError
from recsys.io import write_json, write_text
from recsys.pipeline import PREDICTIONS, STAGES, RunResult, run_pipeline, write_report

log = logging.getLogger(__name__)

ABLATIONS_DIR = "ablations"


@dataclass(frozen=True)
class Component:
    """What switching one component off changes: `overrides(cfg)` -> {dotted key: value}; `stage`: the earliest
    stage those keys affect (everything from it on reruns)."""

    name: str
    stage: str
    what: str
    overrides: Callable[[RunConfig], dict[str, Any]]


def _without_task(task: str) -> Callable[[RunConfig], dict[str, Any]]:
    def overrides(cfg: RunConfig) -> dict[str, Any]:
        tasks = [t for t in cfg.embedding.train.tasks if t != task]
        if not tasks or task not in cfg.embedding.train.tasks:
            raise ConfigError(f"ablating {task}: the run trains on {cfg.embedding.train.tasks}")
        return {"embedding.train.tasks": tasks}
    return overrides


def _stages_without(setting: str, off: Any) -> Callable[[RunConfig], dict[str, Any]]:
    """Every content stage with `setting` switched off (the stages' steps unchanged)."""
    def overrides(cfg: RunConfig) -> dict[str, Any]:
        stages = cfg.embedding.train.stages
        if not cfg.embedding.train.progressive or all(getattr(st, setting) == off for st in stages):
            raise ConfigError(f"ablating {setting}: no stage of the run uses it")
        return {"embedding.train.stages": [{**st.model_dump(), setting: off} for st in stages]}
    return overrides


def _only_if(used: Any, overrides: dict[str, Any], what: str) -> dict[str, Any]:
    if not used:
        raise ConfigError(f"ablating {what}: the run does not use it")
    return overrides


def _full_dim_only(cfg: RunConfig) -> dict[str, Any]:
    dims = cfg.embedding.train.model.all_dims
    return {"embedding.train.matryoshka_weights": [0.0] * (len(dims) - 1) + [1.0]}


COMPONENTS: dict[str, Component] = {c.name: c for c in [
    Component("cre", "cre", "no CRE: the content model's embeddings everywhere",
              lambda cfg: {"embedding.cre.enabled": False}),
    Component("cre.seq2item", "cre", "CRE without seq2item (stage 1 and its multi-task term in stage 2)",
              lambda cfg: {"embedding.cre.seq2item_steps": 0, "embedding.cre.id2item_seq2item_weight": 0.0}),
    Component("cre.id2item", "cre", "CRE without ID2item distillation (stage 2)",
              lambda cfg: {"embedding.cre.id2item_steps": 0}),
    Component("cre.content_anchor", "cre", "CRE without the content anchor",
              lambda cfg: {"embedding.cre.content_anchor_weight": 0.0}),
    Component("cre.item_memory", "cre", "CRE without the item memory: the fusion transformer is fine-tuned instead",
              lambda cfg: {"embedding.cre.memory_hidden": 0, "embedding.cre.finetune_fusion": True}),
    Component("modality.text", "encode", "no text encoder", lambda cfg: {"encoders.text.enabled": False}),
    Component("modality.image", "encode", "no image encoder", lambda cfg: {"encoders.image.enabled": False}),
    Component("modality.audio", "encode", "no audio encoder", lambda cfg: {"encoders.audio.enabled": False}),
    Component("modality.precomputed", "encode", "no precomputed vectors", lambda cfg: {"encoders.precomputed": False}),
    Component("recipe.patterns", "embedding", "omni->omni only: no declared modality patterns",
              lambda cfg: _only_if(cfg.embedding.train.patterns, {"embedding.train.patterns": {}}, "patterns")),
    Component("recipe.micl", "embedding", "no mICL patterns",
              lambda cfg: _only_if(cfg.embedding.train.micl_weight, {"embedding.train.micl_weight": 0.0}, "mICL")),
    Component("recipe.late_fusion", "embedding", "no gated late fusion",
              lambda cfg: _only_if(cfg.embedding.train.model.late_fusion,
                                   {"embedding.train.model.late_fusion": False}, "late fusion")),
    Component("dataset.graded", "embedding", "content training without the graded pairs (CoSENT)",
              _without_task("graded")),
    Component("modality.dropout", "embedding", "swapped: image / audio / vector dropout 0.3 in content training",
              lambda cfg: {"embedding.train.model.modality_drop_prob": 0.3}),
    *[Component(f"missing.{m}", "embedding", f"{m} missing for every item when the catalogue is embedded for the "
                f"features (models trained with it)", lambda cfg, m=m: {"embedding.inference_without": [m]})
      for m in ("text", "image", "audio", "vec")],
    Component("dataset.i2i", "embedding", "content training without the i2i pairs", _without_task("i2i")),
    Component("dataset.q2i", "embedding", "content training without the q2i pairs", _without_task("q2i")),
    Component("dataset.label", "embedding", "content training without the label pairs", _without_task("label")),
    Component("matryoshka", "embedding", "no Matryoshka: only the full dimension is trained", _full_dim_only),
    Component("recipe.progressive", "embedding", "all-in-one: one stage of the same steps on every dataset, no "
              "balancing, no hard negatives",
              lambda cfg: _only_if(cfg.embedding.train.progressive and len(cfg.embedding.train.stages) > 1,
                                   {"embedding.train.progressive": False}, "progressive stages")),
    Component("recipe.balancing", "embedding", "the stages' dataset weights by the sampling rule, not balanced",
              _stages_without("balanced", False)),
    Component("recipe.hard_negatives", "embedding", "in-batch negatives only (no mined hard negatives)",
              _stages_without("hard_negatives", 0)),
    Component("features.collaborative", "features", "no collaborative score (cf_score) in any ranker",
              lambda cfg: {"features.collaborative": False}),
]}
DROP_GROUPS = {"features.embedding_match": "embedding match", "features.sid": "semantic IDs"}
"""Components read from the full run's drop-group attribution (no rerun)."""


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    if last not in node:
        raise ConfigError(f"ablation override {dotted}: no such config key")
    node[last] = value


def config_with(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """The run config with {dotted key: value} overrides applied (validated like any config)."""
    data = cfg.model_dump(mode="python")
    for key, value in overrides.items():
        _set(data, key, value)
    return RunConfig.model_validate(data)


def ablated_config(cfg: RunConfig, component: Component) -> RunConfig:
    """The run config with the component's overrides applied."""
    return config_with(cfg, component.overrides(cfg))


def _shared_dir(run_dir: Path) -> Path:
    """Where the run's dataset and encoder cache are: the run itself, or the parent of a rolling-origin fold."""
    for candidate in (run_dir, run_dir.parent.parent):
        if (candidate / "dataset").is_dir():
            return candidate
    raise DataError(f"{run_dir} has no prepared dataset (nor does its rolling-origin parent)", file=str(run_dir))


def run_ablations(run_dir: str | Path, names: list[str], on_stage: Callable[[str, str], None] | None = None
                  ) -> pd.DataFrame:
    """Ablate each named component of the finished run in `run_dir`; returns (and writes) the ablation table."""
    run_dir = Path(run_dir)
    unknown = [n for n in names if n not in COMPONENTS and n not in DROP_GROUPS]
    if unknown:
        raise ConfigError(f"unknown ablation components {unknown}; choose from {sorted([*COMPONENTS, *DROP_GROUPS])}")
    if not (run_dir / "stages" / "ranking.json").is_file() or not (run_dir / "ranking" / PREDICTIONS).is_file():
        raise DataError("not a finished run with test predictions (run the main job there first)", file=str(run_dir))
    if (run_dir / "folds").is_dir():
        raise ConfigError(f"{run_dir} is a rolling-origin run: ablate one of its folds (--run-dir {run_dir}/folds/"
                          "fold_<k>)")
    cfg = load_model(RunConfig, run_dir / "config.yaml")
    full = json.loads((run_dir / "stages" / "ranking.json").read_text())
    rows = []
    for name in names:
        if name in DROP_GROUPS:
            rows += _drop_group_rows(name, full)
            continue
        component = COMPONENTS[name]
        if on_stage:
            on_stage(name, f"{component.what}: rerun from {component.stage}")
        result, seconds = rerun(run_dir, run_dir / ABLATIONS_DIR / name, ablated_config(cfg, component),
                                component.stage, on_stage)
        rows += [{**r, "seconds": seconds} for r in compare(run_dir, result, name, component.what, component.stage,
                                                             n_bootstrap=cfg.ranking.bootstrap, seed=cfg.seed)]
    table = pd.DataFrame(rows)
    write_json(run_dir / "ablation.json", {"components": names, "rows": table.to_dict(orient="records")})
    section = "\n".join(ablation_section(table)) + "\n"
    write_text(run_dir / "ablation.md", section)
    report = write_report(_finished_run(run_dir))  # the run's report again, with the ablation table at its end
    write_text(report, report.read_text() + "\n" + section)
    log_ablations(run_dir, full, table)
    return table


def rerun(run_dir: Path, scratch: Path, cfg: RunConfig, from_stage: str,
          on_stage: Callable[[str, str], None] | None = None) -> tuple[RunResult, float]:
    """Run `cfg` in `scratch` from `from_stage` up to the ranking stage (the lifetime is not compared), the stages
    before it read from the finished run in `run_dir`; returns the result and its seconds."""
    _reuse_stages_before(run_dir, scratch, from_stage)
    t0 = time.perf_counter()
    result = run_pipeline(cfg, scratch, stages=["ranking"], on_stage=on_stage, shared_dir=_shared_dir(run_dir))
    return result, time.perf_counter() - t0


def _finished_run(run_dir: Path) -> RunResult:
    outputs = {s: json.loads(p.read_text()) for s in STAGES if (p := run_dir / "stages" / f"{s}.json").is_file()}
    return RunResult(run_dir, outputs, {})


def log_ablations(run_dir: Path, full: dict, table: pd.DataFrame) -> None:
    """An MLflow parent run "ablation" beside the run's comparison, one child run per component."""
    import mlflow

    from ranking.tracking import finite_metrics, mlflow_uri_for, tracking

    uri = mlflow_uri_for(run_dir)
    parent = mlflow.MlflowClient(tracking_uri=uri).get_run(full["parent_run_id"])
    with tracking(uri), mlflow.start_run(experiment_id=parent.info.experiment_id, run_name="ablation",
                                         tags={"role": "ablation", "of_run": full["parent_run_id"]}):
        for name, rows in table.groupby("component", sort=False):
            with mlflow.start_run(run_name=name, nested=True, tags={"role": "ablation", "component": name}):
                mlflow.log_param("what", rows["what"].iloc[0])
                mlflow.log_metrics(finite_metrics({f"{r['variant']}.auc_change": r["auc_change"]
                                                   for r in rows.to_dict(orient="records")}))


def _reuse_stages_before(run_dir: Path, scratch: Path, stage: str) -> None:
    """Copy the full run's markers of the stages before `stage` (their artefacts are read in place)."""
    (scratch / "stages").mkdir(parents=True, exist_ok=True)
    for earlier in STAGES[:STAGES.index(stage)]:
        marker = run_dir / "stages" / f"{earlier}.json"
        if marker.is_file():
            shutil.copy(marker, scratch / "stages" / marker.name)


def compare(run_dir: Path, ablated: RunResult, name: str, what: str, from_stage: str = "encode",
            n_bootstrap: int = 200, seed: int = 0, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Per variant in both runs: AUC change (ablated - full, paired over users), and each run's lift against
    its strongest baseline; plus the change of each retrieval evaluator's primary metric in the stages rerun
    from `from_stage` on (paired over the same queries)."""
    full_pred = pd.read_parquet(run_dir / "ranking" / PREDICTIONS)
    abl_pred = pd.read_parquet(ablated.run_dir / "ranking" / PREDICTIONS)
    keys = ["user_id", "item_id", "event_timestamp", "label"]
    if not full_pred[keys].equals(abl_pred[keys]):
        raise DataError("the ablated run's test examples differ from the full run's: no paired comparison",
                        file=str(ablated.run_dir))
    full = {r["variant"]: r for r in json.loads((run_dir / "stages" / "ranking.json").read_text())["table"]}
    abl = {r["variant"]: r for r in ablated.outputs["ranking"]["table"]}
    y, users = full_pred["label"].to_numpy(np.float64), full_pred["user_id"].to_numpy()
    rows = []
    for v in [v for v in full if v in abl and v in abl_pred]:
        d, lo, hi = paired_bootstrap_diff(METRICS["auc"], y, abl_pred[v].to_numpy(np.float64),
                                          full_pred[v].to_numpy(np.float64), users, n=n_bootstrap, seed=seed,
                                          alpha=alpha)
        rows.append({"component": name, "what": what, "variant": v, "auc_change": d, "auc_change_lo": lo,
                     "auc_change_hi": hi, **{f"{k}_{which}": r.get(k) for which, r in (("full", full[v]),
                                                                                     ("ablated", abl[v]))
                                             for k in ("auc_diff_vs_baseline", "auc_diff_vs_baseline_lo",
                                                       "auc_diff_vs_baseline_hi")}})
    retrieval = retrieval_change(run_dir, ablated.run_dir, from_stage, seed=seed)
    for row in rows:
        row["retrieval_change"] = retrieval
    return rows


def retrieval_change(run_dir: Path, ablated_dir: Path, from_stage: str, seed: int = 0
                     ) -> dict[str, list[float]]:
    """{"<stage>.<evaluator>/<metric>": [ablated - full, lo, hi]} of the primary retrieval metrics of the
    embedding and CRE stages that reran (each stage's per-query table, paired over the queries both scored)."""
    out: dict[str, list[float]] = {}
    for stage in ("embedding", "cre"):
        full, abl = run_dir / stage / RETRIEVAL_QUERIES, ablated_dir / stage / RETRIEVAL_QUERIES
        if STAGES.index(stage) < STAGES.index(from_stage) or not (full.is_file() and abl.is_file()):
            continue
        paired = compare_query_tables(pd.read_parquet(abl), pd.read_parquet(full), f"{stage}.", primary_only=True,
                                      seed=seed)
        out.update({k: [paired[k], paired[f"{k}_lo"], paired[f"{k}_hi"]] for k in paired
                    if not k.endswith(("_lo", "_hi", "_n"))})
    return out


def _drop_group_rows(name: str, full: dict) -> list[dict[str, Any]]:
    group = DROP_GROUPS[name]
    return [{"component": name, "what": f"drop-group: {r['variant']} without {group} (= {r['without']})",
             "variant": r["variant"], "auc_change": -r["auc_diff_vs_without"],
             "auc_change_lo": -r["auc_diff_vs_without_hi"], "auc_change_hi": -r["auc_diff_vs_without_lo"]}
            for r in full.get("attribution", []) if r["group"].startswith(group)]


def _retrieval_cell(change: Any) -> str:
    if not isinstance(change, dict):
        return ""
    return "; ".join(f"{k} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for k, (d, lo, hi) in change.items())


def ablation_section(table: pd.DataFrame) -> list[str]:
    from ranking.report import interval

    rows = []
    for r in table.to_dict(orient="records"):
        full = {k.removesuffix("_full"): v for k, v in r.items() if k.endswith("_full")}
        abl = {k.removesuffix("_ablated"): v for k, v in r.items() if k.endswith("_ablated")}
        rows.append({"component": r["component"], "variant": r["variant"],
                     "ΔAUC (ablated - full)": interval(r, "auc_change", True),
                     "lift vs strongest baseline, full": interval(full, "auc_diff_vs_baseline", True),
                     "lift, ablated": interval(abl, "auc_diff_vs_baseline", True),
                     "retrieval change (primary metrics)": _retrieval_cell(r.get("retrieval_change")),
                     "seconds": f"{r['seconds']:.0f}" if pd.notna(r.get("seconds")) else ""})
    return ["## Ablations (one component off at a time; paired over users on the same test examples)", "",
            pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(none)", ""]


__all__ = ["COMPONENTS", "Component", "ablated_config", "compare", "config_with", "rerun", "retrieval_change",
           "run_ablations"]
