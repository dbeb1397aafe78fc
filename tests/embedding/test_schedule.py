"""The one lr schedule (warmup + cosine per stage, torch schedulers): the values both trainers had, exact resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

from embedding.schedule import warmup_cosine_schedule


def _optimizer(peaks: list[float]) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in peaks]
    return torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, peaks)])


def _run(opt: torch.optim.Optimizer, sched, steps: int) -> list[list[float]]:
    """The lr of every group at each of `steps` steps (read before the step, as a training loop uses it)."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_content_schedule_matches_the_hand_computed_values():
    """The content trainer's schedule (lr 1e-3 -> min_lr 1e-4, 10 warmup steps, 100 steps), by hand:
    warmup lr * (s + 1) / 11, then min_lr + 0.5 (1 + cos(pi (s - 10) / 90)) (lr - min_lr)."""
    lr, min_lr = 1e-3, 1e-4
    opt = _optimizer([lr, 0.0])  # the second group: a residual map with lr scale 0 stays at 0
    got = _run(opt, warmup_cosine_schedule(opt, [100], 10, min_lr / lr), 100)
    by_hand = {0: 1e-3 * 1 / 11, 4: 1e-3 * 5 / 11, 9: 1e-3 * 10 / 11, 10: 1e-3,
               40: 1e-4 + 0.5 * (1 + math.cos(math.pi * 30 / 90)) * 9e-4,
               55: 1e-4 + 0.5 * (1 + math.cos(math.pi * 45 / 90)) * 9e-4,
               99: 1e-4 + 0.5 * (1 + math.cos(math.pi * 89 / 90)) * 9e-4}
    for step, value in by_hand.items():
        assert got[step][0] == pytest.approx(value, rel=1e-12), step
    assert all(row[1] == 0.0 for row in got)
    assert all(a[0] >= b[0] for a, b in zip(got[10:], got[11:]))  # decays monotonically after the warmup


def test_cre_schedule_restarts_each_stage_and_scales_every_group():
    """CRE: stages of 10 and 20 steps, 2 warmup steps, floor min_lr / lr = 0.1 shared by groups of different
    peak lr (model 5e-4, item memory 1e-3, heads 2e-3)."""
    peaks = [5e-4, 1e-3, 2e-3]
    opt = _optimizer(peaks)
    got = _run(opt, warmup_cosine_schedule(opt, [10, 20], 2, 0.1), 30)
    factor = {0: 1 / 3, 1: 2 / 3, 2: 1.0, 6: 0.1 + 0.45 * (1 + math.cos(math.pi * 4 / 8)),
              9: 0.1 + 0.45 * (1 + math.cos(math.pi * 7 / 8)),
              10: 1 / 3, 11: 2 / 3, 12: 1.0, 20: 0.1 + 0.45 * (1 + math.cos(math.pi * 8 / 18)),
              29: 0.1 + 0.45 * (1 + math.cos(math.pi * 17 / 18))}
    for step, f in factor.items():
        assert got[step] == pytest.approx([p * f for p in peaks], rel=1e-12), step
    # a stage of zero steps is skipped: the schedule is the other stage's alone
    opt = _optimizer(peaks)
    assert _run(opt, warmup_cosine_schedule(opt, [0, 20], 2, 0.1), 20) == got[10:30]


def test_schedule_resumes_exactly_from_its_state_dict():
    opt = _optimizer([1e-3, 2e-3])
    sched = warmup_cosine_schedule(opt, [10, 20], 2, 0.1)
    full = _run(opt, sched, 30)
    opt = _optimizer([1e-3, 2e-3])
    sched = warmup_cosine_schedule(opt, [10, 20], 2, 0.1)
    _run(opt, sched, 13)
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain containers only
    opt = _optimizer([1e-3, 2e-3])
    sched = warmup_cosine_schedule(opt, [10, 20], 2, 0.1)
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    assert _run(opt, sched, 17) == full[13:]


def test_schedule_rejects_a_floor_above_the_peak():
    with pytest.raises(ValueError, match="min_ratio"):
        warmup_cosine_schedule(_optimizer([1e-3]), [10], 2, 1.5)
