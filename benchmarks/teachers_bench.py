"""Teacher training throughput with one and two processes (the project launcher, gloo on CPU).

    .venv/bin/python benchmarks/teachers_bench.py [--items 2000 --users 300 --events 85] [--nproc 1 2]

Generates a cluster/Markov world (embedding.teachers.data.cluster_markov_dataset; default ~20k train interactions,
~17k train positives), runs `recsys teachers --nproc N` (embedding.teachers.launch: rendezvous store on 127.0.0.1,
a free port) for each N with the default teachers config (`--set teachers.sasrec.epochs=5` style overrides are
passed on), and prints a markdown table: training examples/s (all ranks together; ID teacher example = one (user,
item) pair, sequence teacher example = one next-item position), wall time of the whole
command (imports, planning, training, export) and next-item Recall@10 on leave-last-out in the train period.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embedding.teachers import REPORT_NAME  # noqa: E402
from embedding.teachers.data import cluster_markov_dataset  # noqa: E402
from recsys.data.dataset import write_dataset  # noqa: E402


def run(ds_dir: Path, out: Path, nproc: int, overrides: list[str]) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "recsys.cli", "teachers", "--nproc", str(nproc), "--dataset", str(ds_dir), "--out",
           str(out), "--teacher", "both"] + [a for o in overrides for a in ("--set", o)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"nproc={nproc} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / REPORT_NAME).read_text()), wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--clusters", type=int, default=40)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--events", type=int, default=85)
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="run-config override, e.g. teachers.sasrec.epochs=5 (repeatable)")
    args = p.parse_args()
    ds = cluster_markov_dataset(n_items=args.items, n_clusters=args.clusters, n_users=args.users,
                                events_per_user=args.events, seed=1)
    s = ds.summary()
    with tempfile.TemporaryDirectory() as tmp:
        ds_dir = Path(tmp) / "ds"
        write_dataset(ds, ds_dir)
        rows = []
        for n in args.nproc:
            report, wall = run(ds_dir, Path(tmp) / f"out{n}", n, args.overrides)
            rows.append((n, report, wall))
    print(f"\nTeacher training, cluster/Markov world: {s['items']} items, {s['users']} users, "
          f"train/valid/test interactions {s['train/valid/test interactions']}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}, config defaults {' '.join(args.overrides)}\n")
    print("| processes | ID teacher examples/s | sequence teacher examples/s | wall s (both, incl. start-up) "
          "| ID R@10 | sequence R@10 | popularity R@10 |")
    print("|---|---|---|---|---|---|---|")
    for n, r, wall in rows:
        print(f"| {n} | {r['id']['train/examples_per_sec']:,.0f} | {r['sequence']['train/examples_per_sec']:,.0f} "
              f"| {wall:.1f} | {r['id']['id/recall@10']:.3f} | {r['sequence']['sequence/recall@10']:.3f} "
              f"| {r['sequence']['popularity/recall@10']:.3f} |")


if __name__ == "__main__":
    main()
