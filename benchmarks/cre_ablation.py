"""CRE ablations judged by the ranker: what each CRE choice does to ranker AUC (CRE vs content-only match features).

    .venv/bin/python benchmarks/cre_ablation.py runs/demo [--only default no_stage2_seq2item ...] [--keep]

Copies a finished run directory (it needs the data, encode, embedding and teachers stages) to a scratch copy and,
for each ablation, reruns the cre, features and ranking stages there with `--set` overrides (LightGBM only, the
as-of retrieval engine, 100 bootstrap resamples, no simulation: about 2 minutes each on 2 CPU cores for the
default world). Prints a markdown table: ranker AUC with CRE match features, the paired AUC difference against
content-only match features (95% user-bootstrap interval), and the CRE evaluators before -> after (seq2item
vanilla Recall@10, i2i Recall@10/50 on held-out co-engagement pairs, category precision@10 on content pairs).
The source run is never modified.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAST = ["ranking.rankers=[lgbm]", "ranking.retrieval_engine=asof", "ranking.bootstrap=100",
        "simulation.enabled=false"]
ABLATIONS: dict[str, list[str]] = {
    "default": [],
    "no_stage2_seq2item": ["embedding.cre.id2item_seq2item_weight=0"],
    "aux_i2i_0.2": ["embedding.cre.aux_i2i_weight=0.2"],
    "no_content_anchor": ["embedding.cre.content_anchor_weight=0"],
    "seq2item_only": ["embedding.cre.id2item_steps=0"],
    "teacher_filtered_sequences": ["embedding.cre.filter_by=id"],
    "finetune_fusion_no_memory": ["embedding.cre.finetune_fusion=true", "embedding.cre.memory_hidden=0",
                                  "embedding.cre.seq2item_steps=150", "embedding.cre.id2item_steps=150",
                                  "embedding.cre.batch_size=32"],
}
METRICS = ("seq2item_vanilla/recall@10", "i2i/recall@10", "i2i/recall@50", "category_i2i/precision@10")


def run_ablation(run_dir: Path, overrides: list[str]) -> dict:
    args = [sys.executable, "-m", "recsys.cli", "run", "--config", str(run_dir / "config.yaml"), "--run-dir",
            str(run_dir)]
    for o in FAST + overrides:
        args += ["--set", o]
    for stage in ("cre", "features", "ranking"):
        args += ["--stage", stage, "--force", stage]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(overrides)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    table = {r["variant"]: r for r in json.loads((run_dir / "stages" / "ranking.json").read_text())["table"]}
    cre = json.loads((run_dir / "stages" / "cre.json").read_text())
    return {"match": table["match"], "content": table["match_content"], "cre": cre["metrics"],
            "cre_seconds": cre["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a finished run (data, encode, embedding, teachers stages)")
    ap.add_argument("--only", nargs="*", choices=list(ABLATIONS), help="run these ablations (default: all)")
    ap.add_argument("--keep", type=Path, help="keep the scratch run here instead of a temporary directory")
    args = ap.parse_args()
    for stage in ("data", "encode", "embedding", "teachers"):
        if not (args.run_dir / "stages" / f"{stage}.json").is_file():
            sys.exit(f"{args.run_dir}: stage {stage!r} has not finished; run `recsys run` there first")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.keep or Path(tmp) / "run"
        shutil.copytree(args.run_dir, scratch, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("mlartifacts", "mlflow.db"))
        lines = ["| ablation | overrides | AUC (CRE match) | ΔAUC vs content-only [95% CI] | "
                 + " | ".join(f"{m} before -> after" for m in METRICS) + " | CRE s |",
                 "|---|---|---|---|" + "---|" * len(METRICS) + "---|"]
        for name in args.only or list(ABLATIONS):
            r = run_ablation(scratch, ABLATIONS[name])
            m, c = r["match"], r["cre"]
            cells = [f"{c[f'before/{k}']:.3f} -> {c[k]:.3f}" for k in METRICS]
            lines.append(f"| {name} | {' '.join(ABLATIONS[name]) or '(defaults)'} | {m['auc']:.4f} | "
                         f"{m['auc_diff_vs_ref']:+.4f} [{m['auc_diff_vs_ref_lo']:+.4f}, "
                         f"{m['auc_diff_vs_ref_hi']:+.4f}] | " + " | ".join(cells) + f" | {r['cre_seconds']:.0f} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
