"""One meaning of num_threads and of precision: the run's value reaches every stage that did not set its own;
`cpu_threads` caps torch and the BLAS/OpenMP pools for a block and restores them after; `autocast` is bf16 only
where asked for (or, for auto, where the hardware has it)."""

from __future__ import annotations

import pytest
import threadpoolctl
import torch

from recsys.config import RunConfig
from recsys.runtime import autocast, available_cores, cpu_threads, native_bf16, resolve_precision, resolve_threads


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


def test_run_precision_reaches_the_training_stages_unless_set_there():
    cfg = RunConfig.model_validate({"precision": "fp32", "embedding": {"cre": {"precision": "bf16"}}})
    assert (cfg.embedding.train.precision, cfg.embedding.cre.precision) == ("fp32", "bf16")
    assert RunConfig().embedding.train.precision == "auto"


def test_precision_auto_follows_the_hardware_and_autocast_changes_only_the_matmul_dtype():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with autocast(cpu, "fp32"):
        assert lin(x).dtype == torch.float32
    with autocast(cpu, "bf16"):
        y = lin(x)
        assert y.dtype == torch.bfloat16
    assert lin.weight.dtype == torch.float32  # weights stay float32: only the forward's matmul is bf16
    torch.testing.assert_close(y.float(), lin(x), atol=0.05, rtol=0.02)
