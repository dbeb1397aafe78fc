"""Feature pipeline benchmark on a synthetic world: interest mining, materialization, online latency.

    .venv/bin/python benchmarks/features_bench.py [--users 300] [--days 60] [--per-user 300] [--dim 256]
        [--sid-levels 3] [--prefix-dim 64]

Prints: mining seconds (wall and CPU; the interest-mining speed is watched here, not in the tests), stats seconds,
materialization rows/s, online get for one user x 100 candidates (p50/p99 ms per service), historical retrieval
rows/s (Feast and as-of engines).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.definitions import FULL_SERVICE, SERVICES, FeatureConfig
from features.interests import InterestConfig, daily_snapshots, mine_interests
from features.repo import FeatureRepo
from features.schema import sid_columns
from features.serving import rank_frame
from features.statistics import item_stats, user_stats


def synthetic(users: int, days: int, per_user: int, dim: int, sid_levels: int, n_items: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    topics = rng.normal(size=(30, dim))
    topic = rng.integers(0, 30, n_items)
    e = topics[topic] + rng.normal(size=(n_items, dim))
    e = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
    items = pd.DataFrame({"item_id": np.arange(n_items, dtype=np.int64), "embedding": list(e)})
    for col in sid_columns(sid_levels):
        items[col] = rng.integers(0, 64, n_items).astype(np.int64)
    items["model_version"] = "bench"
    items["event_timestamp"] = start - pd.Timedelta(days=1)
    n = users * per_user * 2  # half are positive
    ev = pd.DataFrame({"user_id": np.repeat(np.arange(users, dtype=np.int64), per_user * 2),
                       "item_id": rng.integers(0, n_items, n).astype(np.int64),
                       "timestamp": (start + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")).as_unit("us"),
                       "like": (rng.random(n) < 0.5).astype(np.float32)})
    return items, ev.sort_values("timestamp", kind="stable").reset_index(drop=True), start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--per-user", type=int, default=300, help="positives per user")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--sid-levels", type=int, default=3)
    ap.add_argument("--prefix-dim", type=int, default=64)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--hist-rows", type=int, default=5000)
    ap.add_argument("--run-dir", type=Path, default=None)
    args = ap.parse_args()
    cfg = FeatureConfig(embedding_dim=args.dim, sid_levels=args.sid_levels, prefix_dim=args.prefix_dim)
    items, ev, start = synthetic(args.users, args.days, args.per_user, args.dim, args.sid_levels)
    snaps = daily_snapshots(start, start + pd.Timedelta(days=args.days))
    pos = ev["like"] >= 1
    res: dict = {"users": args.users, "days": args.days, "positives": int(pos.sum()), "dim": args.dim,
                 "sid_levels": args.sid_levels, "prefix_dim": args.prefix_dim}

    t, c = time.perf_counter(), time.process_time()
    interests = mine_interests(ev.loc[pos], items, snaps, InterestConfig(prefix_dim=cfg.prefix_dim),
                               sid_levels=cfg.sid_levels)
    res["mine_interests_s"] = round(time.perf_counter() - t, 2)
    res["mine_interests_cpu_s"] = round(time.process_time() - c, 2)
    res["interest_rows"] = len(interests)
    t = time.perf_counter()
    tables = {"item_embedding": items, "user_interests": interests, "item_stats": item_stats(ev, pos, snaps),
              "user_stats": user_stats(ev, pos, snaps)}
    res["stats_s"] = round(time.perf_counter() - t, 2)

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="features_bench_"))
    repo = FeatureRepo(run_dir, cfg)
    t = time.perf_counter()
    repo.write(tables)
    res["write_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    repo.apply()
    res["apply_s"] = round(time.perf_counter() - t, 2)
    m = repo.materialize(start + pd.Timedelta(days=args.days))
    res["materialize_rows"] = m["total_rows"]
    res["materialize_s"] = round(m["seconds"], 2)
    res["materialize_rows_per_s"] = round(m["rows_per_s"])
    res["materialize_again_rows"] = repo.materialize(start + pd.Timedelta(days=args.days))["total_rows"]

    rng = np.random.default_rng(1)
    fs = repo.store
    for service in SERVICES:
        rank_frame(fs, 0, list(range(100)), service)  # warm-up
        lat = []
        for _ in range(args.calls):
            u = int(rng.integers(0, args.users))
            cands = rng.choice(len(items), 100, replace=False).tolist()
            t = time.perf_counter()
            rank_frame(fs, u, cands, service)
            lat.append((time.perf_counter() - t) * 1000)
        res[f"online_{service}_p50_ms"] = round(float(np.percentile(lat, 50)), 1)
        res[f"online_{service}_p99_ms"] = round(float(np.percentile(lat, 99)), 1)

    edf = ev.sample(min(args.hist_rows, len(ev)), random_state=0)[["user_id", "item_id", "timestamp"]]
    edf = edf.rename(columns={"timestamp": "event_timestamp"})
    t = time.perf_counter()
    repo.historical(edf, FULL_SERVICE)
    secs = time.perf_counter() - t
    res["historical_rows"] = len(edf)
    res["historical_feast_rows_per_s"] = round(len(edf) / secs)
    t = time.perf_counter()
    repo.historical(edf, FULL_SERVICE, engine="asof")
    res["historical_asof_rows_per_s"] = round(len(edf) / (time.perf_counter() - t))
    res["run_dir"] = str(run_dir)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
