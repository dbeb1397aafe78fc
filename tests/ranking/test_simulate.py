"""Lifetime simulator: oracle beats random, determinism, common random numbers, LT bookkeeping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.metrics import mean_ci
from ranking.simulate import (
    OraclePolicy,
    PopularityPolicy,
    RandomPolicy,
    SimulationConfig,
    lifetime_from_activity,
    run_simulation,
    simulate_lifetime,
)
from recsys.world import WorldConfig, generate_world


@pytest.fixture(scope="module")
def sample():
    return generate_world(WorldConfig(seed=1, n_items=300, n_users=80, n_days=20))


CFG = SimulationConfig(n_days=21, candidates_per_user=50, slate_size=8, bootstrap=300)


def test_oracle_beats_random_with_paired_ci(sample):
    w = sample.world
    res = simulate_lifetime(w, {"random": RandomPolicy(), "oracle": OraclePolicy(w)}, CFG,
                            history=sample.interactions, baseline="random")
    assert res.loc["oracle", "lt7"] > res.loc["random", "lt7"]
    assert res.loc["oracle", "lt7_diff_lo"] > 0 and res.loc["oracle", "lt14_diff_lo"] > 0
    assert res.loc["oracle", "like_rate"] > res.loc["random", "like_rate"]
    assert res.loc["random", "lt7_diff"] == 0
    for w_ in (7, 14):
        assert (res[f"lt{w_}_lo"] <= res[f"lt{w_}"]).all() and (res[f"lt{w_}"] <= res[f"lt{w_}_hi"]).all()
        assert res[f"lt{w_}"].between(1, w_).all()


def test_deterministic_and_common_random_numbers(sample):
    w = sample.world
    policies = {"a": PopularityPolicy(), "b": PopularityPolicy(), "oracle": OraclePolicy(w)}
    r1 = run_simulation(w, policies, CFG, history=sample.interactions, baseline="a")
    r2 = run_simulation(w, policies, CFG, history=sample.interactions, baseline="a")
    pd.testing.assert_frame_equal(r1.summary, r2.summary)
    # the same policy under two names: identical outcomes (pools, noise and returns do not depend on the policy)
    s = r1.summary
    for c in ("lt7", "lt14", "like_rate", "active_days", "impressions"):
        assert s.loc["a", c] == s.loc["b", c], c
    assert s.loc["b", "lt7_diff"] == 0 and s.loc["b", "lt7_diff_lo"] == 0 == s.loc["b", "lt7_diff_hi"]
    # a user's first active day does not depend on the policy (paired comparison)
    pu = r1.per_user.pivot(index="user_id", columns="policy", values="first_day")
    assert (pu["a"] == pu["oracle"]).all()
    # another seed gives other draws
    r3 = run_simulation(w, policies, CFG.model_copy(update={"seed": 9}), history=sample.interactions)
    assert not r3.per_user["active_days"].equals(r1.per_user["active_days"])


def test_intervals_are_the_shared_bootstrap_over_users(sample):
    """LT intervals come from ranking.metrics.mean_ci over the per-user values, paired by the config's seed."""
    w = sample.world
    res = run_simulation(w, {"random": RandomPolicy(), "oracle": OraclePolicy(w)}, CFG, history=sample.interactions,
                         baseline="random")
    lt = res.per_user.pivot(index="user_id", columns="policy", values="lt7")
    alpha = 1 - CFG.ci
    got = tuple(res.summary.loc["oracle", ["lt7", "lt7_lo", "lt7_hi"]])
    assert got == pytest.approx(mean_ci(lt["oracle"].to_numpy(), CFG.bootstrap, CFG.seed, alpha))
    diff = tuple(res.summary.loc["oracle", ["lt7_diff", "lt7_diff_lo", "lt7_diff_hi"]])
    assert diff == pytest.approx(mean_ci((lt["oracle"] - lt["random"]).to_numpy(), CFG.bootstrap, CFG.seed, alpha))


class _Recorder:
    """Random policy that records what it was given."""

    def __init__(self):
        self.calls = []

    def score(self, day, user_ids, candidates, history):
        self.calls.append((day, user_ids.copy(), candidates.copy(), len(history), history["timestamp"].max()))
        return np.random.default_rng(day).random(candidates.shape)


def test_policy_sees_pools_and_growing_history(sample):
    w = sample.world
    rec = _Recorder()
    cfg = CFG.model_copy(update={"n_days": 4, "n_users": 30})
    res = run_simulation(w, {"rec": rec}, cfg, history=sample.interactions, keep_interactions=True)
    days = [c[0] for c in rec.calls]
    assert days == list(range(w.end_day, w.end_day + 4))
    n0 = len(sample.interactions)
    assert rec.calls[0][3] == n0 and rec.calls[-1][3] > rec.calls[1][3] > n0
    for day, users, cand, _, _ in rec.calls:
        assert cand.shape == (len(users), cfg.candidates_per_user)
        assert all(len(set(row)) == cfg.candidates_per_user for row in cand)
        assert np.isin(cand, w.available_items(day)).all()
    sim = res.interactions["rec"]
    assert len(sim) == res.summary.loc["rec", "impressions"]
    assert sim["timestamp"].min() >= w.timestamp(w.end_day)
    assert set(sim.columns) == set(sample.interactions.columns)


def test_bad_inputs_raise(sample):
    w = sample.world
    with pytest.raises(ValueError, match="baseline"):
        simulate_lifetime(w, {"r": RandomPolicy()}, CFG, baseline="nope")
    late = sample.interactions.assign(timestamp=sample.interactions["timestamp"] + pd.Timedelta(days=30))
    with pytest.raises(ValueError, match="after the simulation start"):
        simulate_lifetime(w, {"r": RandomPolicy()}, CFG, history=late)

    class Bad:
        def score(self, day, user_ids, candidates, history):
            return np.zeros(len(user_ids))

    with pytest.raises(ValueError, match="shape"):
        simulate_lifetime(w, {"bad": Bad()}, CFG.model_copy(update={"n_days": 1}))


def test_lifetime_from_activity():
    active = np.array([
        [1, 1, 0, 1, 0, 0, 0, 1, 1, 1],   # t0=0: LT7 = 3
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 0],   # t0=2: LT7 = 7
        [0, 0, 0, 0, 1, 0, 0, 0, 0, 0],   # t0=4: window does not fit in 10 days
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],   # never active
    ], bool)
    first, lt7 = lifetime_from_activity(active, 7)
    np.testing.assert_array_equal(first, [0, 2, 4, -1])
    np.testing.assert_array_equal(lt7[:2], [3, 7])
    assert np.isnan(lt7[2]) and np.isnan(lt7[3])
