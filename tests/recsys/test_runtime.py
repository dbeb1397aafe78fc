"""One meaning of num_threads: the run's value reaches every stage that did not set its own, and `cpu_threads`
caps torch and the BLAS/OpenMP pools for a block and restores them after."""

from __future__ import annotations

import threadpoolctl
import torch

from recsys.config import RunConfig
from recsys.runtime import available_cores, cpu_threads, resolve_threads


def _stage_threads(cfg: RunConfig) -> dict[str, int | None]:
    return {"encoders": cfg.encoders.num_threads, "embedding": cfg.embedding.train.num_threads,
            "cre": cfg.embedding.cre.num_threads, "teachers": cfg.teachers.num_threads,
            "lgbm": cfg.ranking.lgbm.num_threads, "dlrm": cfg.ranking.dlrm.num_threads,
            "duckdb": cfg.feature_config().num_threads}


def test_run_threads_reach_every_stage_unless_set_there():
    assert set(_stage_threads(RunConfig()).values()) == {1}
    cfg = RunConfig.model_validate({"num_threads": None, "ranking": {"lgbm": {"num_threads": 1}}})
    got = _stage_threads(cfg)
    assert got.pop("lgbm") == 1 and set(got.values()) == {None}
    assert resolve_threads(None) == available_cores()


def test_cpu_threads_caps_and_restores_every_pool():
    before_torch = torch.get_num_threads()
    before_pools = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    with cpu_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info())
    assert torch.get_num_threads() == before_torch
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before_pools
