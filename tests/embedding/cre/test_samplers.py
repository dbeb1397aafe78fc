"""CRE's batch samplers: a batch is a function of the generator only, and draws what each stage needs."""

from __future__ import annotations

import numpy as np
import pytest

from embedding.cre.data import SequenceRows
from embedding.cre.samplers import ID2ItemSampler, Seq2ItemSampler


def _sequences(rng: np.random.Generator) -> dict[str, SequenceRows]:
    """40 vanilla examples over item rows 0..99 with 3..6 history items, 10 filtered ones."""
    out = {}
    for kind, n in (("vanilla", 40), ("filtered", 10)):
        hist = np.full((n, 6), -1)
        for i in range(n):
            k = rng.integers(3, 7)
            hist[i, :k] = rng.choice(100, k, replace=False)
        out[kind] = SequenceRows(hist, rng.integers(0, 100, n))
    return out


def test_seq2item_sampler_one_kind_per_batch_and_live_slots():
    seqs = _sequences(np.random.default_rng(0))
    sampler = Seq2ItemSampler(seqs, {"vanilla": 0.75, "filtered": 0.25}, batch_size=8, live_slots=2)
    a, b = sampler.sample(np.random.default_rng([3, 7])), sampler.sample(np.random.default_rng([3, 7]))
    assert a.kind == b.kind and np.array_equal(a.index, b.index) and np.array_equal(a.live, b.live)  # (seed, step)
    kinds = [sampler.sample(np.random.default_rng([0, s])).kind for s in range(400)]
    assert 0.65 < kinds.count("vanilla") / 400 < 0.85 and set(kinds) == {"vanilla", "filtered"}
    for s in range(20):
        batch = sampler.sample(np.random.default_rng([1, s]))
        rows = seqs[batch.kind]
        assert len(np.unique(batch.index)) == len(batch.index) == 8  # without replacement
        np.testing.assert_array_equal(batch.history, rows.history[batch.index])
        np.testing.assert_array_equal(batch.target, rows.target[batch.index])
        assert (batch.live.sum(1) == 2).all() and not (batch.live & (batch.history < 0)).any()  # live: valid only
        assert set(batch.rows) == set(batch.target) | set(batch.history[batch.live])
        assert np.all(np.diff(batch.rows) > 0)  # sorted unique: positions found by searchsorted
    exact = Seq2ItemSampler(seqs, {"vanilla": 1.0}, batch_size=8).sample(np.random.default_rng(5))
    assert exact.kind == "vanilla" and np.array_equal(exact.live, exact.history >= 0)  # no bank: every slot live
    with pytest.raises(ValueError, match="positive share"):
        Seq2ItemSampler(seqs, {"vanilla": 0.0}, batch_size=8)


def test_id2item_sampler_draws_distill_rows_and_swaps_aux_pairs():
    distill = np.array([2, 3, 5, 8, 13, 21])
    q, t = np.arange(0, 50), np.arange(100, 150)
    sampler = ID2ItemSampler(distill, (q, t), batch_size=4, aux_batch_size=16)
    a, b = sampler.sample(np.random.default_rng(9)), sampler.sample(np.random.default_rng(9))
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.aux_query, b.aux_query)
    assert len(np.unique(a.rows)) == 4 and set(a.rows) <= set(distill)
    pairs = {(int(x), int(y)) for x, y in zip(q, t)}
    drawn = list(zip(a.aux_query.tolist(), a.aux_target.tolist()))
    assert len(drawn) == 16 and all((x, y) in pairs or (y, x) in pairs for x, y in drawn)
    assert any(x >= 100 for x, _ in drawn) and any(x < 100 for x, _ in drawn)  # either item may be the query
    assert set(a.target_rows) == set(a.rows) | set(a.aux_target)
    alone = ID2ItemSampler(distill, None, batch_size=10, aux_batch_size=16).sample(np.random.default_rng(0))
    assert len(alone.rows) == len(distill) and len(alone.aux_query) == len(alone.aux_target) == 0
