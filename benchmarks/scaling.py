"""Growth of every stage of the main job with the world's size: synthetic worlds at 1x, 4x and 16x the demo's
items and users (so about 16x its impressions), each stage run in its own `recsys run --stage S` process.

    .venv/bin/python benchmarks/scaling.py --scales 1,4,16 --out runs/scaling [--spark] [--write]

Per world and stage: wall seconds, CPU seconds (user + system of the process and its children, Spark's Python
workers included) and the process's peak resident memory; per stage the growth exponent k of time ~ size^k
between the two largest worlds (size = impressions). `--spark` reruns SPARK_STAGES with `engine=spark` on each
world (the same outputs; tests/recsys/test_spark_engine.py) and reports them beside the local ones.
A stage that finished in an earlier invocation is read back from its marker (the runs resume).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import machine, reference_seconds, replace_section  # noqa: E402
from recsys.io import write_json  # noqa: E402
from recsys.pipeline import STAGES  # noqa: E402

BASE = {"n_items": 2000, "n_users": 300}
"""The demo world's size (configs/demo.yaml); a scale multiplies both."""
TIMINGS = "scaling.json"
SPARK_STAGES = ("cre", "features")
"""Rerun with engine=spark: CRE (its training, then the catalogue's inference and semantic IDs as Spark jobs) and
the features (interests, statistics, Feast's Spark materialization)."""


@contextlib.contextmanager
def held(lock: Path | None):
    """An exclusive lock on `lock` while a stage runs (None: no lock): other heavy jobs on the machine that take
    the same lock wait between stages instead of sharing the cores with a timed one."""
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_stage(run_dir: Path, config: Path, stage: str, sets: list[str], force: bool = False) -> dict[str, float]:
    """One stage in its own process: wall and CPU seconds, peak RSS in MB (os.wait4's rusage of the child)."""
    args = [sys.executable, "-m", "recsys.cli", "run", "--config", str(config), "--run-dir", str(run_dir),
            "--stage", stage, *[a for s in sets for a in ("--set", s)], *(["--force", stage] if force else [])]
    log = run_dir.parent / f"{run_dir.name}.{stage}.log"
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{stage} failed in {run_dir} (exit {code}); see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def impressions(run_dir: Path) -> int:
    return int(json.loads((run_dir / "stages" / "data.json").read_text())["summary"]["interactions"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--out", type=Path, default=Path("runs/scaling"))
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    ap.add_argument("--stages", default=",".join(s for s in STAGES if s != "simulation"))
    ap.add_argument("--spark", action="store_true", help="also the feature stage on local[2] Spark")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--lock", type=Path, help="hold this lock file while each stage runs (the wait is not timed)")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / TIMINGS
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    stages = args.stages.split(",")
    for scale in [int(s) for s in args.scales.split(",")]:
        run_dir = out / f"{scale}x"
        sets = [f"world.{k}={v * scale}" for k, v in BASE.items()]
        runs = [("local", stages, sets)]
        if args.spark:
            runs.append(("spark", SPARK_STAGES, [*sets, "engine=spark"]))
        for engine, names, overrides in runs:
            for stage in names:
                key = f"{scale}x/{engine}/{stage}"
                if key in record:
                    continue
                spark = engine == "spark"  # in no fingerprint: forced, and from an empty online store
                for db in run_dir.glob("**/feature_repo/data/online_store.db") if spark else ():
                    db.unlink()
                with held(args.lock):
                    reference = reference_seconds()  # the machine's speed at this stage's hour
                    timing = run_stage(run_dir, args.config, stage, overrides, force=spark)
                record[key] = {**timing, "reference_s": reference, "impressions": impressions(run_dir)}
                print(key, json.dumps(record[key]), flush=True)
                write_json(record_path, record)  # atomically: an interrupted run resumes from it
    rows = [{"world": k.split("/")[0], "engine": k.split("/")[1], "stage": k.split("/")[2], **v}
            for k, v in record.items()]
    frame = pd.DataFrame(rows)
    scales = sorted({r["world"] for r in rows}, key=lambda w: int(w[:-1]))
    lines = []
    for (stage, engine), g in frame.groupby(["stage", "engine"], sort=False):
        g = g.set_index("world")
        row = {"stage": stage, "engine": engine}
        for w in scales:
            if w in g.index:
                row[f"{w} wall s"] = f"{g.loc[w, 'wall_s']:.0f}"
                row[f"{w} CPU s"] = f"{g.loc[w, 'cpu_s']:.0f}"
                row[f"{w} peak MB"] = f"{g.loc[w, 'peak_mb']:.0f}"
        if len(scales) >= 2 and all(w in g.index for w in scales[-2:]):
            a, b = g.loc[scales[-2]], g.loc[scales[-1]]
            grow = math.log(b["impressions"] / a["impressions"])
            row[f"k ({scales[-2]}->{scales[-1]})"] = f"{math.log(b['wall_s'] / a['wall_s']) / grow:.2f}"
            speed = a.get("reference_s", math.nan) / b.get("reference_s", math.nan)  # > 1: the machine slowed
            if speed == speed:
                row["k, reference-normalised"] = f"{math.log(b['wall_s'] / a['wall_s'] * speed) / grow:.2f}"
        lines.append(row)
    text = pd.DataFrame(lines).fillna("").to_markdown(index=False)
    sizes = ", ".join(f"{w}: {int(frame.loc[frame['world'] == w, 'impressions'].iloc[0]):,} impressions"
                      for w in scales)
    print(text)
    if args.write:
        replace_section("Scaling", f"`benchmarks/scaling.py --scales {args.scales}`; {machine()}. Worlds: {sizes}. "
                                   f"Each stage in its own process; k = growth exponent of wall time with "
                                   f"impressions; reference-normalised: each wall time divided by a fixed "
                                   f"single-threaded workload timed just before the stage (benchmarks/_report.py "
                                   f"reference_seconds), which takes out a machine that ran faster or slower "
                                   f"between the two runs.\n\n{text}\n")


if __name__ == "__main__":
    main()
