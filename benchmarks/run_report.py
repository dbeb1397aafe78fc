"""Speed numbers of a finished `recsys run`: demo wall time per stage, embedding training steps/s and inference
items/s, teacher examples/s, CRE steps/s, materialization rows/s, point-in-time retrieval rows/s, and online
retrieval latency (p50/p99) for one user with 100 candidates from the run's Feast online store.

    .venv/bin/python benchmarks/run_report.py runs/demo [--wall-seconds 512] [--requests 50]

Prints a markdown section (machine and date included) to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load average {load}"


def online_latency(run_dir: Path, requests: int, n_candidates: int = 100, seed: int = 0) -> dict[str, float]:
    from features.definitions import SERVICES
    from features.repo import FeatureRepo

    repo = FeatureRepo(run_dir)
    items = pd.read_parquet(run_dir / "dataset" / "items.parquet", columns=["item_id"])["item_id"].to_numpy()
    users = pd.read_parquet(run_dir / "dataset" / "interactions.parquet", columns=["user_id"])["user_id"].unique()
    rng = np.random.default_rng(seed)
    out = {}
    for service in SERVICES:
        repo.online(int(users[0]), items[:n_candidates].tolist(), service)  # warm-up
        times = []
        for _ in range(requests):
            u, c = int(rng.choice(users)), rng.choice(items, n_candidates, replace=False).tolist()
            t0 = time.perf_counter()
            repo.online(u, c, service)
            times.append((time.perf_counter() - t0) * 1000)
        out[service] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--wall-seconds", type=float, default=None, help="measured wall time of the whole command")
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    st = {p.stem: json.loads(p.read_text()) for p in sorted((args.run_dir / "stages").glob("*.json"))}
    lines = [f"## Main job: `{args.run_dir}`", "",
             f"Measured {date.today().isoformat()} on {machine()}; CPU only.", ""]
    total = sum(s.get("seconds", 0.0) for s in st.values())
    wall = f"{args.wall_seconds:.0f} s wall for the whole command; " if args.wall_seconds else ""
    lines += [f"- {wall}{total:.0f} s in stages: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in st.items()
                                                               if "seconds" in v)]
    emb = st.get("embedding", {})
    if emb:
        lines.append(f"- embedding training: {emb['train_steps_per_s']:.2f} steps/s; inference "
                     f"{emb['infer_items_per_s']:.0f} items/s")
    te = st.get("teachers", {}).get("examples_per_sec")
    if te:
        lines.append(f"- teachers (1 process): ID two-tower {te['id']:.0f} examples/s, SASRec {te['sequence']:.0f} "
                     "examples/s")
    cre = st.get("cre", {})
    if cre.get("steps_per_sec"):
        lines.append(f"- CRE: {cre['steps_per_sec']:.2f} steps/s; inference {cre['infer_items_per_s']:.0f} items/s")
    for name, fs in st.get("features", {}).get("sets", {}).items():
        m = fs["materialize"]
        lines.append(f"- features ({name}): build {fs['build_seconds']:.1f} s; materialize {m['total_rows']} rows "
                     f"in {m['seconds']:.1f} s = {m['rows_per_s']:.0f} rows/s")
    rk = st.get("ranking", {})
    if rk:
        lines.append(f"- point-in-time retrieval (Feast get_historical_features, all embedding sets): "
                     f"{rk['n_train'] + rk['n_test']} examples in {rk['frames_seconds']:.0f} s")
    if (args.run_dir / "feature_repo").is_dir():
        for service, (p50, p99) in online_latency(args.run_dir, args.requests).items():
            lines.append(f"- online retrieval, 1 user x 100 candidates, `{service}`: p50 {p50:.0f} ms, "
                         f"p99 {p99:.0f} ms ({args.requests} requests)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
