"""The main job beside a CPU-bound neighbour: how much a busy machine slows it, with the default threads and with
every pool at all cores.

    .venv/bin/python benchmarks/threads_bench.py [--config configs/tiny.yaml] [--write]

Runs `recsys run` three times in fresh run directories (the encoder cache is warmed first, so every run does the
same work): quiet with the defaults (num_threads 1 in every pool), beside a neighbour with the defaults, and beside
the neighbour with `--set num_threads=null` (every pool at every usable core). The neighbour is one process
multiplying matrices with its BLAS at every core. Reference: the quiet run, measured in the same benchmark run.
With --write the section "Threads on a busy machine" of BENCHMARKS.md is replaced.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import REPO, machine, ratio, replace_section

NEIGHBOUR = ("import numpy as np, time\n"
             "a = np.random.default_rng(0).random((1500, 1500))\n"
             "end = time.monotonic() + {seconds}\n"
             "while time.monotonic() < end:\n"
             "    a = (a @ a) / 1500.0\n")


def run_job(config: Path, run_dir: Path, extra: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "recsys.cli", "run", "-c", str(config), "-r", str(run_dir), *extra],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"recsys run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def beside_neighbour(config: Path, run_dir: Path, extra: list[str], limit_s: float) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR.format(seconds=limit_s)], env=env)
    try:
        time.sleep(1.0)  # let it reach full speed
        return run_job(config, run_dir, extra)
    finally:
        neighbour.kill()
        neighbour.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "tiny.yaml")
    ap.add_argument("--limit-s", type=float, default=900.0, help="the neighbour stops by itself after this")
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args()
    before = machine()
    with tempfile.TemporaryDirectory(prefix="threads_bench_") as tmp:
        root = Path(tmp)
        run_job(args.config, root / "warm", ["--stage", "encode"])  # the encoder cache every run starts from

        def fresh(name: str) -> Path:
            shutil.copytree(root / "warm" / "cache", root / name / "cache")
            return root / name

        quiet = run_job(args.config, fresh("quiet"), [])
        loaded = beside_neighbour(args.config, fresh("loaded"), [], args.limit_s)
        all_cores = beside_neighbour(args.config, fresh("all_cores"), ["--set", "num_threads=null"], args.limit_s)
    rows = [("beside the neighbour, defaults (num_threads 1)", loaded),
            ("beside the neighbour, `--set num_threads=null` (every pool at every core)", all_cores)]
    lines = [f"Measured with `benchmarks/threads_bench.py` on `{args.config.relative_to(REPO)}` (the main job in "
             f"miniature) on {before}. The neighbour: one process multiplying 1500x1500 matrices with its BLAS at "
             "every core. Reference: the same job on the quiet machine in the same benchmark run.", "",
             "| run | project (s) | quiet reference (s) | slowdown |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {secs:.1f} | {quiet:.1f} | {ratio(secs, quiet)} |" for label, secs in rows]
    body = "\n".join(lines)
    print(body)
    if args.write:
        replace_section("Threads on a busy machine", body)


if __name__ == "__main__":
    main()
