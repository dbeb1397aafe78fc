"""The TorchRec planner's sharding plan of the teachers' tables at larger sizes, for CPU and for GPU ranks.

    .venv/bin/python benchmarks/teachers_plan.py [--write]

Builds the two-tower and SASRec teachers' embedding collections on the meta device (no memory) for catalogues of
1M to 400M items, and asks `embedding.teachers.train.planner` (the planner training uses) for a plan on 2 CPU
ranks (table-wise: the only sharding gloo runs) and on 8 GPU ranks (the planner's choice; a GPU's memory is
TorchRec's default topology, no GPU needed to plan). Prints per table: the sharding type, the kernel, the ranks
and the rows on the largest shard; `--write` replaces the section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection  # noqa: E402

from benchmarks._report import machine, replace_section  # noqa: E402
from embedding.teachers.sasrec import sasrec_tables  # noqa: E402
from embedding.teachers.train import planner, sharders  # noqa: E402
from embedding.teachers.two_tower import two_tower_tables  # noqa: E402

ITEMS = (1_000_000, 10_000_000, 100_000_000, 400_000_000)
USERS = 2_000_000
DIM = 128
TARGETS = (("cpu", 2), ("cuda", 8))


def plan_rows(kind: str, module: torch.nn.Module, tables: list[str], items: int) -> list[dict]:
    rows = []
    for device, world in TARGETS:
        try:
            plan = planner(tables, world, device).plan(module, sharders(0.05))
        except Exception as e:  # the planner's own PlannerError: no plan fits
            rows.append({"teacher": kind, "items": f"{items:,}", "ranks": f"{world} x {device}",
                         "table": "all", "sharding": f"no plan ({type(e).__name__})"})
            continue
        for params in plan.plan.values():
            for name, ps in params.items():
                shards = ps.sharding_spec.shards if ps.sharding_spec else []
                rows.append({"teacher": kind, "items": f"{items:,}", "ranks": f"{world} x {device}", "table": name,
                             "sharding": ps.sharding_type, "kernel": ps.compute_kernel,
                             "on ranks": ",".join(map(str, ps.ranks or [])),
                             "rows on the largest shard": f"{max(s.shard_sizes[0] for s in shards):,}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the planner warns about meta-device dry runs, which this is
    meta = torch.device("meta")
    rows = []
    for items in ITEMS:
        rows += plan_rows("two-tower", EmbeddingBagCollection(two_tower_tables(USERS, items, DIM), device=meta),
                          ["user", "item"], items)
        rows += plan_rows("SASRec", EmbeddingCollection(sasrec_tables(items, DIM), device=meta), ["item"], items)
    text = pd.DataFrame(rows).fillna("").to_markdown(index=False)
    print(text)
    if args.write:
        replace_section("Teacher sharding plans at scale (`benchmarks/teachers_plan.py`)", (
            f"{machine()}. {USERS:,} users, "
            f"{DIM}-d tables, fp32. On CPU the plan is table-wise by constraint; on GPU the planner picks row-wise "
            f"once a table outgrows what it gives one device.\n\n{text}\n"))


if __name__ == "__main__":
    main()
