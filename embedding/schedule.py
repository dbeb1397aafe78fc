"""The learning-rate schedule of every embedding trainer: linear warmup, then cosine decay to a floor, per stage.

    warmup_cosine_schedule(optimizer, stage_steps=[600, 600], warmup_steps=10, min_ratio=0.1) -> SequentialLR

Each group's lr at step k of a stage of n steps is its initial lr times

    (k + 1) / (warmup_steps + 1)                                       for k < warmup_steps
    min_ratio + 0.5 * (1 + cos(pi * min(1, (k - warmup) / max(1, n - warmup)))) * (1 - min_ratio)   after

and the schedule restarts at every stage boundary (CRE's seq2item and ID2item stages each warm up again; the
content trainer is one stage). Torch's `LambdaLR` carries the factor and `SequentialLR` the stage boundaries,
so the scheduler's `state_dict()` resumes it exactly. Not `LinearLR` + `CosineAnnealingLR`: the warmup here
starts at 1 / (warmup + 1) rather than 0, and the floor is a ratio shared by groups with different peak rates
(CosineAnnealingLR's `eta_min` is one absolute rate for every group).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR, SequentialLR


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """The lr multiplier at step k (0-based) of one stage of `total_steps` steps (see the module docstring)."""
    if warmup_steps < 0 or total_steps < 0 or not 0 <= min_ratio <= 1:
        raise ValueError(f"warmup_steps={warmup_steps} and total_steps={total_steps} must be >= 0 and "
                         f"min_ratio={min_ratio} within [0, 1]")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        ratio = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1.0 - min_ratio)

    return factor


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, stage_steps: Sequence[int], warmup_steps: int,
                           min_ratio: float) -> SequentialLR:
    """One warmup + cosine decay per stage with steps, as one torch scheduler; call `step()` after each
    optimizer step. Each group's current lr is its peak (set it before building the schedule)."""
    stages = [n for n in stage_steps if n > 0] or [0]
    schedulers = [LambdaLR(optimizer, warmup_cosine(warmup_steps, n, min_ratio)) for n in stages]
    milestones = [int(sum(stages[:i + 1])) for i in range(len(stages) - 1)]
    return SequentialLR(optimizer, schedulers, milestones)


__all__ = ["warmup_cosine", "warmup_cosine_schedule"]
