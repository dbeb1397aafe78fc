"""The content recipe, cumulatively (the form of SAIL's Table 8): each row adds one component to the row above and
reruns the content stage and everything after it up to the ranking stage, on the same data and test examples.

    .venv/bin/python benchmarks/content_recipe.py --run-dir runs/demo [--write]
    .venv/bin/python benchmarks/content_recipe.py --config configs/movielens.yaml --run-dir runs/movielens_recipe \
        --dataset movielens --folds 2,3,4 --write

`--run-dir` is a finished run (its data and encode stages are reused), or with `--folds` a rolling-origin run
directory whose folds are prepared up to the encode stage when absent (from `--config`). The rows run in
<fold dir>/recipe/<k>_<name> (resumable: a finished row is read back). The stages are SAIL's progressive ones
(`stages: progressive`, embedding.train.progressive_stages) whatever the run used. CRE is off in every row (the
recipe is the content model's; the CRE stage's own ablations are `recsys ablate`), so the match features are the
content model's. Per row: retrieval on the content stage's held-out pairs (i2i and q2i Recall@10, label Recall@1),
each paired over queries against the text-only baseline and against the row above; the ranker
lift of the match features against the strongest baseline, and its change against the row above (paired over
users on the same test examples). Over several folds: retrieval is the mean over folds, its differences are paired
over the queries of every fold; AUC numbers are means over folds with a bootstrap over users within folds
(ranking.metrics.pooled_bootstrap), each fold's lift against that fold's strongest baseline. `--write` replaces
the section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import machine, replace_section  # noqa: E402
from embedding.evaluate import BASELINE_QUERIES, RETRIEVAL_QUERIES, compare_query_tables  # noqa: E402
from embedding.train import progressive_stages  # noqa: E402
from ranking.metrics import METRICS, pooled_bootstrap  # noqa: E402
from recsys.ablation import config_with, rerun  # noqa: E402
from recsys.config import RunConfig  # noqa: E402
from recsys.config_io import load_model  # noqa: E402
from recsys.data.prepare import prepare_dataset  # noqa: E402
from recsys.pipeline import PREDICTIONS, RunResult, run_pipeline  # noqa: E402
from recsys.rolling import FOLDS_DIR, fold_config  # noqa: E402

PATTERNS = {
    "synthetic": {"i2i": ["omni->omni", "image->text*0.5", "audio->text*0.5"],
                  "q2i": ["text->omni", "text->image*0.5"], "label": ["omni->text", "image->text*0.5"]},
    "movielens": {"i2i": ["omni->omni", "image->text*0.5", "text[title]->text[tags,categories]*0.5"],
                  "q2i": ["text->omni", "text->image*0.5"], "label": ["omni->text", "image->text*0.5"]},
}
"""Each dataset's modality patterns (SAIL §3.3.4): what its items carry (MovieLens: poster, title, tags, genres;
the synthetic world: image, audio, title and tags)."""


def steps(cfg: RunConfig, dataset: str, order: str = "sail") -> list[tuple[str, dict[str, Any]]]:
    """(name, the overrides of this row and every row above). `sail`: the paper's order (progressive balanced
    stages first); `unbalanced`: the pieces that do not need the balanced stages, with hard negatives mined in a
    second unbalanced stage, and without late fusion."""
    stages = [st.model_dump() for st in progressive_stages()]
    no_negatives = [{**st, "hard_negatives": 0} for st in stages]
    two_stages = [{**stages[0], "steps": 150}, {**stages[2], "steps": 150, "balanced": False}]
    tasks = list(cfg.embedding.train.tasks)
    patterns = ("+ modality patterns", {"embedding.train.patterns": PATTERNS[dataset]})
    graded = ("+ graded pairs (CoSENT)", {"embedding.train.tasks": [*tasks, "graded"]})
    micl = ("+ mICL (alpha 0.25)", {"embedding.train.micl_weight": 0.25})
    dropout = ("+ modality dropout 0.2", {"embedding.train.model.modality_drop_prob": 0.2})
    if order == "sail":
        rows = [("all-in-one", {"embedding.train.progressive": False}),
                ("+ progressive stages, balanced weights", {"embedding.train.progressive": True,
                                                            "embedding.train.stages": no_negatives}),
                ("+ hard negatives (stages: progressive)", {"embedding.train.stages": stages}),
                patterns, graded, micl,
                ("+ gated late fusion", {"embedding.train.model.late_fusion": True}), dropout]
    else:
        rows = [("all-in-one", {"embedding.train.progressive": False}), patterns, micl,
                ("+ hard negatives (a second, unbalanced stage)", {"embedding.train.progressive": True,
                                                                   "embedding.train.stages": two_stages}),
                graded, dropout]
    out, acc = [], {"embedding.cre.enabled": False}
    for name, overrides in rows:
        acc = {**acc, **overrides}
        out.append((name, dict(acc)))
    return out


RETRIEVAL = ("i2i/recall@10", "q2i/recall@10", "label/recall@1")
KEYS = ["user_id", "item_id", "event_timestamp", "label"]


def cell(d: float, lo: float, hi: float) -> str:
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def base_runs(run_dir: Path, config: Path | None, folds: list[int] | None) -> list[tuple[Path, RunConfig]]:
    """(run directory, its config) per fold: the run itself, or each fold of a rolling-origin run (prepared up
    to the encode stage from `config` where it is not yet)."""
    if not folds:
        return [(run_dir, load_model(RunConfig, config or run_dir / "config.yaml"))]
    cfg = load_model(RunConfig, config or run_dir / "config.yaml")
    if cfg.data.split.folds < 2 or max(folds) >= cfg.data.split.folds:
        raise SystemExit(f"--folds {folds} needs data.split.folds > {max(folds)} (the config has "
                         f"{cfg.data.split.folds})")
    prepare_dataset(cfg.data, run_dir / "dataset", world=cfg.world)
    out = []
    for k in folds:
        fold_cfg, fold_dir = fold_config(cfg, k), run_dir / FOLDS_DIR / f"fold_{k}"
        run_pipeline(fold_cfg, fold_dir, stages=["encode"], shared_dir=run_dir)
        out.append((fold_dir, fold_cfg))
    return out


def pooled_queries(dirs: list[Path], name: str) -> pd.DataFrame | None:
    """The per-query tables of every fold, each query keyed by its fold; None if a fold has none."""
    paths = [d / "embedding" / name for d in dirs]
    if not all(p.is_file() for p in paths):
        return None
    return pd.concat([pd.read_parquet(p).assign(query=lambda t, k=k: f"{k}:" + t["query"].astype(str))
                      for k, p in enumerate(paths)], ignore_index=True)


def pooled_auc(results: list[RunResult], variant: str, against: list[RunResult] | None, bootstrap: int,
               seed: int) -> tuple[float, float, float]:
    """Mean over folds of AUC(variant) - AUC(reference): the row above's same variant (`against`) or each fold's
    strongest baseline; interval from a bootstrap over users within folds."""
    parts = []
    for k, r in enumerate(results):
        pred = pd.read_parquet(r.run_dir / "ranking" / PREDICTIONS)
        if against is None:
            ref = pred[r.outputs["ranking"]["baseline"]]
        else:
            other = pd.read_parquet(against[k].run_dir / "ranking" / PREDICTIONS)
            if not pred[KEYS].equals(other[KEYS]):
                raise SystemExit(f"{r.run_dir}: test examples differ from the row above's; no paired comparison")
            ref = other[variant]
        parts.append((pred["label"], pred[variant], ref, pred["user_id"].to_numpy()))
    return pooled_bootstrap(METRICS["auc"], parts, bootstrap, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None, help="the config the rows start from (default: the run's)")
    ap.add_argument("--folds", default=None, help="rolling-origin folds to run, e.g. 2,3,4 (default: one run)")
    ap.add_argument("--dataset", choices=sorted(PATTERNS), default="synthetic")
    ap.add_argument("--order", choices=["sail", "unbalanced"], default="sail", help="which cumulative table")
    ap.add_argument("--rows", type=int, default=None, help="only the first N rows")
    ap.add_argument("--variants", default="match,dlrm_match_sid",
                    help="the ranker variants whose lifts are reported (comma-separated)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    folds = [int(k) for k in args.folds.split(",")] if args.folds else None
    variants = args.variants.split(",")
    bases = base_runs(run_dir, args.config, folds)
    bootstrap, seed = bases[0][1].ranking.bootstrap, bases[0][1].seed
    rows, prev, prev_queries = [], None, None
    for k, (name, overrides) in enumerate(steps(bases[0][1], args.dataset, args.order)[:args.rows]):
        results, dirs = [], []
        row_dir = f"{k}_{name.strip('+ ').split(' ')[0]}"
        for base, cfg in bases:
            scratch = base / "recipe" / ("" if args.order == "sail" else args.order) / row_dir
            results.append(rerun(base, scratch, config_with(cfg, overrides), "embedding")[0])
            dirs.append(scratch)
        queries = pooled_queries(dirs, RETRIEVAL_QUERIES)
        seconds = [sum(r.outputs[s]["seconds"] for s in ("embedding", "features", "ranking")) for r in results]
        row = {"row": name, "seconds": round(sum(seconds) / len(seconds))}
        for m in RETRIEVAL:
            values = [r.outputs["embedding"]["metrics"].get(m) for r in results]
            row[m] = f"{sum(values) / len(values):.3f}" if None not in values else "-"
        baseline = pooled_queries(dirs, BASELINE_QUERIES)
        if baseline is not None:
            metrics = compare_query_tables(queries, baseline, "vs_baseline/", primary_only=True, seed=seed)
        else:  # a row built before the baseline's table was written: one run's own comparison, else none
            metrics = results[0].outputs["embedding"]["metrics"] if len(results) == 1 else {}
        for m in RETRIEVAL:
            if f"vs_baseline/{m}" in metrics:
                row[f"{m} vs text-only"] = cell(*(metrics[f"vs_baseline/{m}{s}"] for s in ("", "_lo", "_hi")))
        if prev is not None:
            change = compare_query_tables(queries, prev_queries, "", primary_only=True, seed=seed)
            for m in RETRIEVAL:
                row[f"Δ{m}"] = cell(*(change[f"{m}{s}"] for s in ("", "_lo", "_hi"))) if m in change else ""
            for v in variants:
                row[f"{v}: ΔAUC vs row above"] = cell(*pooled_auc(results, v, prev, bootstrap, seed))
        for v in variants:
            row[f"{v}: lift vs strongest baseline"] = cell(*pooled_auc(results, v, None, bootstrap, seed))
        print(json.dumps(row), flush=True)
        rows.append(row)
        prev, prev_queries = results, queries
    frame = pd.DataFrame(rows).fillna("")
    text = frame.to_markdown(index=False)
    print(text)
    if args.write:
        where = f"folds {args.folds} (rolling origin)" if folds else "one run"
        names = ", ".join(f"`{v}`" for v in variants)
        body = (f"`benchmarks/content_recipe.py --run-dir {args.run_dir} --dataset {args.dataset} --order {args.order}"
                f"{' --folds ' + args.folds if folds else ''}`; {where}; {machine()}. CRE off in every row; "
                f"ranker variants {names}; intervals 95%, paired over queries (retrieval) and over users "
                f"(AUC).\n\n{text}\n")
        title = f"{args.dataset}" if args.order == "sail" else f"{args.dataset}, {args.order}"
        replace_section(f"Content recipe, cumulative ({title})", body)


if __name__ == "__main__":
    main()
