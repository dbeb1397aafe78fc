"""The content recipe, cumulatively (the form of SAIL's Table 8): each row adds one component to the row above and
reruns the content stage and everything after it up to the ranking stage, on the same data and test examples.

    .venv/bin/python benchmarks/content_recipe.py --run-dir runs/demo [--config configs/demo.yaml] [--write]
    .venv/bin/python benchmarks/content_recipe.py --run-dir runs/movielens/folds/fold_4 --dataset movielens --write

`--run-dir` is a finished run (its data, encode and teachers stages are reused); the rows run in
<run-dir>/recipe/<k>_<name> (resumable: a finished row is read back). The stages are SAIL's progressive ones
(`stages: progressive`, embedding.train.progressive_stages) whatever the run used. CRE is off in every row (the
recipe is the content model's; the CRE stage's own ablations are `recsys ablate`), so the match features are the
content model's. Per row: retrieval on the content stage's held-out pairs (i2i and q2i Recall@10, label Recall@1;
the first row also against the text-only baseline), each paired over queries against the row above; the ranker
lift of the match features against the strongest baseline, and its change against the row above (paired over
users on the same test examples). `--write` replaces the section of BENCHMARKS.md.
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
from embedding.train import progressive_stages  # noqa: E402
from recsys.ablation import compare, config_with, rerun, retrieval_change  # noqa: E402
from recsys.config import RunConfig  # noqa: E402
from recsys.config_io import load_model  # noqa: E402

PATTERNS = {
    "synthetic": {"i2i": ["omni->omni", "image->text*0.5", "audio->text*0.5"],
                  "q2i": ["text->omni", "text->image*0.5"], "label": ["omni->text", "image->text*0.5"]},
    "movielens": {"i2i": ["omni->omni", "image->text*0.5", "text[title]->text[tags,categories]*0.5"],
                  "q2i": ["text->omni", "text->image*0.5"], "label": ["omni->text", "image->text*0.5"]},
}
"""Each dataset's modality patterns (SAIL §3.3.4): what its items carry (MovieLens: poster, title, tags, genres;
the synthetic world: image, audio, title and tags)."""


def steps(cfg: RunConfig, dataset: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, the overrides of this row and every row above)."""
    stages = [st.model_dump() for st in progressive_stages()]
    no_negatives = [{**st, "hard_negatives": 0} for st in stages]
    tasks = list(cfg.embedding.train.tasks)
    rows = [("all-in-one", {"embedding.train.progressive": False}),
            ("+ progressive stages, balanced weights", {"embedding.train.progressive": True,
                                                        "embedding.train.stages": no_negatives}),
            ("+ hard negatives (stages: progressive)", {"embedding.train.stages": stages}),
            ("+ modality patterns", {"embedding.train.patterns": PATTERNS[dataset]}),
            ("+ graded pairs (CoSENT)", {"embedding.train.tasks": [*tasks, "graded"]}),
            ("+ mICL (alpha 0.25)", {"embedding.train.micl_weight": 0.25}),
            ("+ gated late fusion", {"embedding.train.model.late_fusion": True}),
            ("+ modality dropout 0.2", {"embedding.train.model.modality_drop_prob": 0.2})]
    out, acc = [], {"embedding.cre.enabled": False}
    for name, overrides in rows:
        acc = {**acc, **overrides}
        out.append((name, dict(acc)))
    return out


RETRIEVAL = ("i2i/recall@10", "q2i/recall@10", "label/recall@1")


def cell(d: float, lo: float, hi: float) -> str:
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None, help="the config the rows start from (default: the run's)")
    ap.add_argument("--dataset", choices=sorted(PATTERNS), default="synthetic")
    ap.add_argument("--variant", default="match", help="the ranker variant whose lift is reported")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    cfg = load_model(RunConfig, args.config or run_dir / "config.yaml")
    rows, prev = [], None
    for k, (name, overrides) in enumerate(steps(cfg, args.dataset)):
        scratch = run_dir / "recipe" / f"{k}_{name.strip('+ ').split(' ')[0]}"
        result, seconds = rerun(run_dir, scratch, config_with(cfg, overrides), "embedding")
        metrics = result.outputs["embedding"]["metrics"]
        table = {r["variant"]: r for r in result.outputs["ranking"]["table"]}
        v = table[args.variant]
        row = {"row": name, "seconds": result.outputs["embedding"]["seconds"] + result.outputs["ranking"]["seconds"]
               + result.outputs["features"]["seconds"]}
        for m in RETRIEVAL:
            row[m] = f"{metrics[m]:.3f}" if m in metrics else "-"
            if k == 0 and f"vs_baseline/{m}" in metrics:
                row[f"{m} vs text-only"] = cell(*(metrics[f"vs_baseline/{m}{s}"] for s in ("", "_lo", "_hi")))
        if prev is not None:
            change = retrieval_change(prev, scratch, "embedding")
            for m in RETRIEVAL:
                key = f"embedding.{m.split('/')[0]}/{m.split('/')[1]}"
                row[f"Δ{m}"] = cell(*change[key]) if key in change else ""
            paired = {r["variant"]: r for r in compare(prev, result, name, name, "embedding", n_bootstrap=200)}
            p = paired.get(args.variant)
            row["ΔAUC vs row above"] = cell(p["auc_change"], p["auc_change_lo"], p["auc_change_hi"]) if p else ""
        row["lift vs strongest baseline"] = cell(v["auc_diff_vs_baseline"], v["auc_diff_vs_baseline_lo"],
                                                 v["auc_diff_vs_baseline_hi"])
        print(json.dumps(row), flush=True)
        rows.append(row)
        prev = scratch
    frame = pd.DataFrame(rows).fillna("")
    text = frame.to_markdown(index=False)
    print(text)
    if args.write:
        body = (f"`benchmarks/content_recipe.py --run-dir {args.run_dir} --dataset {args.dataset}`; {machine()}. "
                f"CRE off in every row; "
                f"ranker variant `{args.variant}`; intervals 95%, paired over queries (retrieval) and over users "
                f"(AUC).\n\n{text}\n")
        replace_section(f"Content recipe, cumulative ({args.dataset})", body)


if __name__ == "__main__":
    main()
