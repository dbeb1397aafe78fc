"""Where and how a stage computes: device, CPU threads, seeds. One meaning of each setting, project-wide.

- device: "auto" -> cuda when available, else cpu; anything else is passed to `torch.device`.
- num_threads: None -> every core this process may run on (its CPU affinity, not the machine's core count);
  a positive int -> exactly that many threads in each compute pool (torch, BLAS/OpenMP, LightGBM, DuckDB). The run
  config's top-level `num_threads` (default 1) reaches every stage that does not set its own; `cpu_threads`
  applies it for the duration of a block and restores the previous counts after.
- precision: "auto" -> bfloat16 autocast in training where the hardware multiplies bf16 natively (CUDA with
  bf16, a CPU with AVX512-BF16 or AMX), else float32; "fp32" / "bf16" force one. Weights, optimizer state and
  every saved or served vector stay float32: only the training forward's matmuls and convolutions run in bf16.
- determinism: training blocks run inside `deterministic_kernels()` with a fixed thread count.
- seeds: a stage runs its seeded work inside `seeded(cfg.seed)` (or draws from local generators seeded from its
  config); the caller's global random state is never reset. The run config derives every stage's seed from the
  run seed unless the user set it (recsys/config.py).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Literal, get_args

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def native_bf16(device: torch.device) -> bool:
    """Does this device multiply bfloat16 natively (fast), rather than emulating it (slower than float32)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and (torch.cpu._is_avx512_bf16_supported()
                                                              or torch.cpu._is_amx_tile_supported()))
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" where `native_bf16(device)`, else "fp32"; "fp32" and "bf16" are kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The training forward's mixed-precision context: bf16 autocast, or nothing for fp32."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def available_cores() -> int:
    """Cores this process may actually use (sched_getaffinity where the OS has it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(num_threads: int | None) -> int:
    if num_threads is None:
        return available_cores()
    if num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer or None (all usable cores), got {num_threads}")
    return int(num_threads)


@contextlib.contextmanager
def cpu_threads(num_threads: int | None) -> Iterator[int]:
    """Run the block with `resolve_threads(num_threads)` threads in every compute pool of the process: torch's
    intra-op pool and the BLAS/OpenMP pools numpy, scipy, scikit-learn and faiss use (threadpoolctl); restore the
    previous counts after. Why all of them: a pool left at its all-cores default spins against the others and any
    neighbour process (on a busy 2-core machine two threads ran 2-4x slower than one)."""
    from threadpoolctl import threadpool_limits

    n = resolve_threads(num_threads)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with Python, numpy and torch generators seeded from `seed`; restore their state after.

    Library code wraps its seeded work in this (model init, sampling), so a stage is deterministic on its own and
    never resets the caller's global random state.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def deterministic_kernels() -> Iterator[None]:
    """Run the block with deterministic torch kernels and cuDNN autotuning off; restore the settings after.

    Seeds and a fixed thread count are not enough on their own: some CUDA kernels (scatter/index_add, cuBLAS
    split-K reductions, cuDNN autotuning) pick a different reduction order from run to run. Ops without a
    deterministic variant warn instead of failing; cuBLAS needs CUBLAS_WORKSPACE_CONFIG before its first use."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
