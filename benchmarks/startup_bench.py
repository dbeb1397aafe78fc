"""Start-up cost of the command line: `recsys --help` and a one-shot `recsys features serve`, against the
interpreter's own start measured in the same run.

    .venv/bin/python benchmarks/startup_bench.py [--repeats 5] [--write]

Each command runs --repeats times in a fresh process (median wall time). The serve row needs a materialized run
directory (--run-dir; skipped without one): it pays Feast's import, the registry and one online read, which
`recsys features http` and `recsys features serve --requests` pay once per process instead.
With --write the section "Command-line start-up" of BENCHMARKS.md is replaced.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import REPO, machine, ratio, replace_section


def median_wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--run-dir", type=Path, default=None, help="a materialized run directory for the serve row")
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args()
    before = machine()
    python = median_wall([sys.executable, "-c", "pass"], args.repeats)
    rows = [("`recsys --help`", median_wall([sys.executable, "-m", "recsys.cli", "--help"], args.repeats)),
            ("`recsys features --help`", median_wall([sys.executable, "-m", "recsys.cli", "features", "--help"],
                                                     args.repeats)),
            ("`import feast` (what a store command pays once)", median_wall([sys.executable, "-c", "import feast"],
                                                                            args.repeats))]
    if args.run_dir is not None:
        rows.append((f"`recsys features serve` one-shot, 3 candidates ({args.run_dir.name})", median_wall(
            [sys.executable, "-m", "recsys.cli", "features", "serve", "-r", str(args.run_dir), "--user", "1",
             "--candidates", "1,2,3"], args.repeats)))
    lines = [f"Measured with `benchmarks/startup_bench.py` (median of {args.repeats} fresh processes) on {before}. "
             "Reference: `python -c pass` in the same run. Target: `recsys --help` under 2 s.", "",
             "| command | project (s) | `python -c pass` (s) | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {secs:.2f} | {python:.2f} | {ratio(secs, python)} |" for label, secs in rows]
    body = "\n".join(lines)
    print(body)
    if args.write:
        replace_section("Command-line start-up", body)


if __name__ == "__main__":
    main()
