"""The planner the teachers train with: table-wise on CPU ranks, the planner's choice (row-wise for a table that
outgrows one device) on GPU ranks; planned on the meta device, no memory and no GPU needed."""

from __future__ import annotations

import torch
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from embedding.teachers.train import planner, sharders
from embedding.teachers.two_tower import two_tower_tables


def _sharding(device: str, world: int, items: int) -> dict[str, str]:
    ebc = EmbeddingBagCollection(two_tower_tables(1000, items, 128), device=torch.device("meta"))
    plan = planner(["user", "item"], world, device).plan(ebc, sharders(0.05))
    return {name: ps.sharding_type for params in plan.plan.values() for name, ps in params.items()}


def test_cpu_ranks_shard_table_wise_and_gpu_ranks_row_wise_at_scale():
    assert _sharding("cpu", 2, 100_000_000) == {"user": "table_wise", "item": "table_wise"}
    assert _sharding("cuda", 8, 100_000_000)["item"] == "row_wise"     # 51 GB: more than one device holds
    assert _sharding("cuda", 8, 10_000)["item"] == "table_wise"          # small: one device
