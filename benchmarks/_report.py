"""What every benchmark's report shares: the machine line and the replacement of its own BENCHMARKS.md section.

A benchmark prints a markdown section (title `## <name>`) and, when asked, replaces that section in BENCHMARKS.md and
nothing else, so `make bench` can rewrite the file benchmark by benchmark.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))

from recsys.io import write_text  # noqa: E402

BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def machine() -> str:
    """CPU model, usable cores, Python, load average now and the date: the line every table is read against."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return (f"{cores} usable cores, {model}, Python {platform.python_version()}, load average {load_average()} "
            f"(1, 5, 15 min), {dt.date.today().isoformat()}")


def reference_seconds(repeats: int = 3) -> float:
    """Best-of-`repeats` seconds of a fixed single-threaded workload (sorting 4M floats and a 10M-step Python loop):
    timings of one run divided by it compare across hours on which the same machine runs faster or slower."""
    x = np.random.default_rng(0).random(4_000_000)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.sort(x)
        total = 0
        for i in range(10_000_000):
            total += i & 7
        best = min(best, time.perf_counter() - t0)
    return best


def ratio(project: float, reference: float) -> str:
    return f"{project / reference:.2f}x" if reference > 0 else "n/a"


def replace_section(title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace `## title` (up to the next `## `) in `path` by `## title` + body; append it when absent."""
    section = f"## {title}\n\n{body.strip()}\n\n"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text(path, text)
