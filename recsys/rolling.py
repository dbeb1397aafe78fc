"""Rolling-origin evaluation: K time folds, each the whole main job on the data before its window ends, pooled.

    <run_dir>/
      dataset/, cache/encoders/   prepared once, shared by every fold (content encoders see no interaction)
      folds/fold_<k>/             a full run directory per fold (its own models, Feast repos, MLflow db, results.md)
      rolling.json                the fold cut-offs, the per-fold tables and the pooled table
      results.md                  pooled table, per-fold numbers, then the last fold's report

What a fold refits, and why all of it: the content embedding, the teachers, CRE, the interest and statistics
features, the semantic IDs and both rankers are fitted only on events before that fold's evaluation window (its
dataset is `recsys.data.dataset.fold_view`: events after the window do not exist for it, and its split puts the
window in the test period). What a fold reuses: the prepared dataset and the content-encoder cache (pretrained
encoders applied to item content, no interaction). The lifetime simulation runs in the last fold only (its world
continues after the data's end). Pooled numbers are means over folds of each fold's metric or paired difference,
with intervals from a bootstrap over users within folds (`ranking.metrics.pooled_bootstrap`); each fold's lifts
are measured against that fold's strongest baseline (chosen on that fold's validation AUC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ranking.metrics import METRICS, pooled_bootstrap
from recsys.config import RunConfig
from recsys.data.prepare import prepare_dataset
from recsys.data.split import Fold, rolling_folds
from recsys.io import write_json, write_text
from recsys.pipeline import PREDICTIONS, RunResult, run_pipeline

log = logging.getLogger(__name__)

FOLDS_DIR = "folds"
SUMMARY = "rolling.json"


@dataclass
class RollingResult:
    run_dir: Path
    folds: list[Fold]
    fold_results: list[RunResult]
    pooled: pd.DataFrame


def fold_config(cfg: RunConfig, fold: int) -> RunConfig:
    """The run config of one fold: the same settings, the fold's index, the simulation in the last fold only."""
    data = cfg.model_dump(mode="python")
    data["data"]["split"]["fold"] = fold
    data["simulation"]["enabled"] = bool(cfg.simulation.enabled and fold == cfg.data.split.folds - 1)
    return RunConfig.model_validate(data)


def run_rolling(cfg: RunConfig, run_dir: str | Path, force: set[str] | None = None,
                on_stage: Callable[[str, str], None] | None = None) -> RollingResult:
    """Every fold's main job (each resumable and fingerprinted like any run), then the pooled table."""
    run_dir = Path(run_dir)
    split = cfg.data.split
    if split.folds < 2 or split.fold is not None:
        raise ValueError("run_rolling needs data.split.folds >= 2 and no data.split.fold (the driver sets it)")
    ds = prepare_dataset(cfg.data, run_dir / "dataset", world=cfg.world, reuse="data" not in (force or set()))
    folds = rolling_folds(ds.interactions["timestamp"], split.folds, split.test_fraction, split.valid_fraction)
    results = []
    for fold in folds:
        log.info("fold %d/%d: train < %s <= valid < %s <= test < %s", fold.index + 1, len(folds), fold.train_end,
                 fold.valid_end, fold.test_end)
        if on_stage:
            on_stage(f"fold {fold.index}", f"train < {fold.train_end:%Y-%m-%d} <= valid < {fold.valid_end:%Y-%m-%d} "
                                          f"<= test < {fold.test_end:%Y-%m-%d}")
        results.append(run_pipeline(fold_config(cfg, fold.index), run_dir / FOLDS_DIR / f"fold_{fold.index}",
                                    force=force, on_stage=on_stage, shared_dir=run_dir))
    pooled = pool_folds(results, n_bootstrap=cfg.ranking.bootstrap, seed=cfg.seed)
    write_json(run_dir / SUMMARY, {"folds": [f.to_dict() for f in folds],
                                   "per_fold": [fold_rows(r) for r in results],
                                   "pooled": pooled.to_dict(orient="records")})
    write_rolling_report(run_dir, folds, results, pooled)
    return RollingResult(run_dir, folds, results, pooled)


def fold_rows(result: RunResult) -> list[dict]:
    """One fold's per-variant numbers: AUC and the lift against that fold's strongest baseline, with intervals."""
    rk = result.outputs["ranking"]
    keep = ("variant", "validation_auc", "auc", "auc_lo", "auc_hi", "auc_diff_vs_baseline",
            "auc_diff_vs_baseline_lo", "auc_diff_vs_baseline_hi", "auc_diff_vs_ranker", "auc_diff_vs_ranker_lo",
            "auc_diff_vs_ranker_hi", "auc_diff_vs_ref", "auc_diff_vs_ref_lo", "auc_diff_vs_ref_hi", "n_test")
    return [{"strongest_baseline": rk["baseline"], **{k: row.get(k) for k in keep}} for row in rk["table"]]


def pool_folds(results: list[RunResult], n_bootstrap: int = 200, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Per variant present in every fold: pooled AUC, pooled ΔAUC against each fold's strongest baseline, against
    its own ranker's baseline, and (where it has a content-only twin) against the twin; each with its interval."""
    folds = []
    for r in results:
        pred = pd.read_parquet(r.run_dir / "ranking" / PREDICTIONS)
        rk = r.outputs["ranking"]
        refs = {row["variant"]: {"ref": row.get("ref_variant"), "ranker": row.get("ranker_baseline")}
                for row in rk["table"]}
        folds.append((pred, rk["baseline"], refs))
    variants = [v for v in results[-1].outputs["ranking"]["variants"] if all(v in p.columns for p, _, _ in folds)]
    rows = []
    for v in variants:
        refs = {"baseline": [base for _, base, _ in folds],
                **{name: [r.get(v, {}).get(name) for _, _, r in folds] for name in ("ranker", "ref")}}
        row: dict = {"variant": v, **_pooled(folds, v, [None] * len(folds), "auc", n_bootstrap, seed, alpha)}
        for name, per_fold in refs.items():
            usable = all(isinstance(r, str) and r != v for r in per_fold)
            row.update(_pooled(folds, v, per_fold, f"auc_diff_vs_{name}", n_bootstrap, seed, alpha) if usable
                       else {f"auc_diff_vs_{name}": np.nan, f"auc_diff_vs_{name}_lo": np.nan,
                             f"auc_diff_vs_{name}_hi": np.nan})
        rows.append({**row, "folds": len(folds), "strongest_baselines": ",".join(refs["baseline"])})
    return pd.DataFrame(rows)


def _pooled(folds: list, variant: str, refs: list[str | None], key: str, n_bootstrap: int, seed: int,
            alpha: float) -> dict[str, float]:
    parts = [(pred["label"].to_numpy(np.float64), pred[variant].to_numpy(np.float64),
              None if ref is None else pred[ref].to_numpy(np.float64), pred["user_id"].to_numpy())
             for (pred, _, _), ref in zip(folds, refs)]
    value, lo, hi = pooled_bootstrap(METRICS["auc"], parts, n_bootstrap, seed, alpha)
    return {key: value, f"{key}_lo": lo, f"{key}_hi": hi}


def write_rolling_report(run_dir: Path, folds: list[Fold], results: list[RunResult], pooled: pd.DataFrame) -> Path:
    """results.md: pooled table, the fold cut-offs with each fold's strongest baseline, per-fold lifts, then the
    last fold's own report (attribution, importance, cold items, embedding and CRE tables, lifetime)."""
    from ranking.report import interval

    last = (results[-1].run_dir / "results.md").read_text()
    lines = [f"# Results: {run_dir} (rolling origin, {len(folds)} folds)", "",
             "## Pooled over folds (mean of per-fold values; 95% bootstrap over users within folds)", "",
             "Each fold's lift is measured against that fold's strongest baseline (by its validation AUC).", "",
             pd.DataFrame([{"variant": r["variant"], "AUC": interval(r, "auc"),
                            "ΔAUC vs strongest baseline": interval(r, "auc_diff_vs_baseline", True),
                            "ΔAUC vs its ranker's baseline": interval(r, "auc_diff_vs_ranker", True),
                            "ΔAUC vs content-only": interval(r, "auc_diff_vs_ref", True)}
                           for r in pooled.to_dict(orient="records")]).to_markdown(index=False, disable_numparse=True),
             "", "## Folds", ""]
    fold_table = []
    for fold, r in zip(folds, results):
        rk = r.outputs["ranking"]
        fold_table.append({"fold": fold.index, "train <": f"{fold.train_end:%Y-%m-%d %H:%M}",
                           "valid <": f"{fold.valid_end:%Y-%m-%d %H:%M}", "test <": f"{fold.test_end:%Y-%m-%d %H:%M}",
                           "test examples": rk.get("n_test"), "test users":
                               int(pd.read_parquet(r.run_dir / "ranking" / PREDICTIONS)["user_id"].nunique()),
                           "strongest baseline": rk["baseline"]})
    lines += [pd.DataFrame(fold_table).to_markdown(index=False, disable_numparse=True), "",
              "## Per fold: ΔAUC vs that fold's strongest baseline", ""]
    per = {f"fold {k}": {row["variant"]: interval(row, "auc_diff_vs_baseline", True) for row in fold_rows(r)}
           for k, r in enumerate(results)}
    lines += [pd.DataFrame(per).rename_axis("variant").reset_index().to_markdown(index=False, disable_numparse=True),
              "", f"## The last fold in full ({results[-1].run_dir})", ""]
    lines += last.split("\n", 1)[1].splitlines()
    return write_text(run_dir / "results.md", "\n".join(lines) + "\n")


__all__ = ["FOLDS_DIR", "RollingResult", "fold_config", "pool_folds", "run_rolling"]
