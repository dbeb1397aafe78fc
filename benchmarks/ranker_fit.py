"""Ranker fit and predict time on a synthetic click frame (the wall-clock checks that used to live in tests).

    .venv/bin/python benchmarks/ranker_fit.py [--rows 30000 --users 3000 --items 800 --dense 16]

Rows carry user_id, item_id, three more categorical ids and `--dense` numeric features; the label is a logistic
function of a few of them plus per-user and per-item effects, so both rankers have something to learn. Prints a
markdown table: fit seconds, predict rows/s and test AUC for LightGBM and the TorchRec DLRM (one thread each, as
configured by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ranking.metrics import auc  # noqa: E402
from ranking.registry import new_ranker  # noqa: E402

CATEGORICAL = ("user_id", "item_id", "genre", "creator", "device")


def click_frame(rows: int, users: int, items: int, dense: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user_id": rng.integers(1, users + 1, rows), "item_id": rng.integers(1, items + 1, rows),
                          "genre": rng.integers(0, 20, rows), "creator": rng.integers(0, 200, rows),
                          "device": rng.integers(0, 4, rows)})
    x = rng.normal(size=(rows, dense))
    for j in range(dense):
        frame[f"f{j}"] = x[:, j]
    user_bias, item_bias = rng.normal(0, 0.7, users + 1), rng.normal(0, 0.7, items + 1)
    logit = (x[:, :4] @ np.array([0.8, -0.6, 0.5, 0.3]) + user_bias[frame["user_id"]] + item_bias[frame["item_id"]]
             + 0.4 * (frame["genre"] % 3 == 0) - 1.0)
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(
        rng.uniform(0, 30 * 86400, rows)), unit="s")
    return frame, [*CATEGORICAL, *[f"f{j}" for j in range(dense)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=30000)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=800)
    ap.add_argument("--dense", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    frame, features = click_frame(args.rows, args.users, args.items, args.dense, args.seed)
    test, _ = click_frame(args.rows // 3, args.users, args.items, args.dense, args.seed + 1)
    print(f"| ranker | fit s ({args.rows} rows x {len(features)} features) | predict rows/s | test AUC |")
    print("|---|---|---|---|")
    for kind in ("lgbm", "dlrm"):
        ranker = new_ranker(kind)
        t0 = time.perf_counter()
        ranker.fit(frame, features, CATEGORICAL)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = ranker.predict(test)
        rows_per_s = len(test) / (time.perf_counter() - t0)
        print(f"| {kind} | {fit_s:.1f} | {rows_per_s:,.0f} | {auc(test['label'].to_numpy(), scores):.4f} |")


if __name__ == "__main__":
    main()
