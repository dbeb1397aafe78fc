"""Offline lifetime (LT7 / LT14) simulation: replay a synthetic world's behaviour law with a ranker as policy.

Each simulated day, every user of the simulation draws a return decision from the world's return law (how
satisfied their last session left them); an active user is shown the policy's top `slate_size` items of a
candidate pool of `candidates_per_user` random available items, and responds by the world's response law.

Common random numbers: the candidate pools, the response noise of each (user, day, slot), the session times
and the return uniforms of each (user, day) are drawn from `(seed, day)` streams that do not depend on the
policy, so two policies differ only through what they rank. A user's first active day is therefore the same
under every policy, and per-user LT differences are paired.

The day itself (who returns, the session, the responses, the remembered satisfaction) is the world's
`recsys.world.replay.replay_day`, the same step that generated the dataset's log under the logging policy.

LT (sail-method.md §12): for a user whose first active day in the simulation is t0, LT7 = number of active days
in [t0, t0 + 6] (1..7), LT14 alike; users whose window does not fit in the simulation are left out of that
metric. Means come with percentile-bootstrap confidence intervals over users (`ranking.metrics.mean_ci`, the
bootstrap of the ranking metrics); differences to a baseline policy use the same resampled users for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from ranking.metrics import mean_ci
from recsys.world.generator import World
from recsys.world.replay import LOG_COLUMNS, SECONDS_PER_DAY, Slate, replay_day

LABEL_COLUMNS = LOG_COLUMNS[3:]
LT_WINDOWS = (7, 14)


class SimulationConfig(BaseModel):
    """How long, how many users and how large the candidate pools and slates of a lifetime simulation are."""

    model_config = ConfigDict(extra="forbid")

    n_days: int = Field(21, ge=1)                  # simulated days (LT14 needs >= 14; 21 = first weeks + 14)
    candidates_per_user: int = Field(100, ge=1)    # random available items per user-day the policy ranks
    slate_size: int = Field(10, ge=1)              # impressions per session (the policy's top-k)
    n_users: int | None = Field(None, ge=1)        # simulate a random subset of users; None = all
    seed: int = 0                                  # common random numbers (pools, noise, returns, bootstrap)
    bootstrap: int = Field(1000, ge=10)            # bootstrap resamples for the confidence intervals
    ci: float = Field(0.95, gt=0, lt=1)
    start_day: int | None = None                   # first simulated day (days since world start);
                                                   # None = the first day after the dataset


@runtime_checkable
class Policy(Protocol):
    """A ranking policy: higher score = shown first.

    day: the simulated day (days since the world's start, 2026-01-01 by default; `world.timestamp(day)`).
    user_ids: [U] active users; candidates: [U, C] item ids; history: the policy's knowledge, i.e. the dataset's
    pre-simulation interactions plus this policy's simulated interactions so far (columns of ds.interactions,
    sorted by time). Returns [U, C] float scores.
    """

    def score(self, day: int, user_ids: np.ndarray, candidates: np.ndarray,
              history: pd.DataFrame) -> np.ndarray: ...


class RandomPolicy:
    """Uniformly random ranking (its own stream, so it does not disturb the common random numbers)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, day, user_ids, candidates, history):
        return np.random.default_rng([self.seed, 7919, int(day)]).random(candidates.shape)


class PopularityPolicy:
    """Items ranked by their positive count in the history's last `window_days` (all history if None)."""

    def __init__(self, column: str = "like", min_value: float = 1.0, window_days: float | None = 14.0):
        self.column, self.min_value, self.window_days = column, min_value, window_days

    def score(self, day, user_ids, candidates, history):
        h = history
        if self.window_days is not None and len(h):
            h = h.loc[h["timestamp"] >= h["timestamp"].max() - pd.Timedelta(days=self.window_days)]
        counts = h.loc[h[self.column] >= self.min_value, "item_id"].value_counts()
        return counts.reindex(candidates.ravel()).fillna(0).to_numpy(np.float64).reshape(candidates.shape)


class OraclePolicy:
    """Ranks by the true utility of the world's behaviour law (an upper reference, not a learnable policy)."""

    def __init__(self, world: World):
        self.world = world

    def score(self, day, user_ids, candidates, history):
        w = self.world
        u = w.user_index(user_ids)[:, None]
        return w.law.utility(u, w.item_index(candidates), day + 0.5)


@dataclass
class SimulationResult:
    summary: pd.DataFrame                   # one row per policy (see simulate_lifetime)
    per_user: pd.DataFrame                  # policy, user_id, first_day, lt7, lt14, active_days, likes, shown
    interactions: dict[str, pd.DataFrame] = field(default_factory=dict)  # simulated impressions per policy


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series(dtype="int64"), "item_id": pd.Series(dtype="int64"),
                         "timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                         **{c: pd.Series(dtype="float32") for c in LABEL_COLUMNS}})


@dataclass
class _DayDraws:
    """Common random numbers of one day for all simulated users."""

    returns: np.ndarray          # [U] uniforms
    candidates: np.ndarray       # [U, C] item indices
    noise: dict[str, np.ndarray]  # [U, k] response noise per slot
    times: np.ndarray            # [U, k] fractional day of each slot


def _draw_day(world: World, cfg: SimulationConfig, day: int, n_users: int) -> _DayDraws:
    rng = np.random.default_rng([cfg.seed, 1, day])
    returns = rng.random(n_users)
    avail = np.flatnonzero(world.available_mask(day))
    if not len(avail):
        raise ValueError(f"simulate: no item is available on day {day}")
    c = min(cfg.candidates_per_user, len(avail))
    keys = rng.random((n_users, len(avail)))
    pick = np.argpartition(keys, c - 1, axis=1)[:, :c] if c < len(avail) else np.argsort(keys, axis=1)
    k = min(cfg.slate_size, c)
    noise = world.law.draw_noise(rng, (n_users, k))
    hour = rng.uniform(7, 23, (n_users, 1))
    times = day + (hour * 3600 + np.arange(k)[None] * rng.uniform(20, 60, (n_users, 1))) / SECONDS_PER_DAY
    return _DayDraws(returns, avail[pick], noise, times)


class _RankedSlates:
    """A policy's slates of one day: its top `slate_size` of each active user's candidate pool.

    history: the frames of the policy's knowledge (pre-simulation history, then its own simulated days).
    """

    def __init__(self, name: str, policy: Policy, world: World, day: int, user_ids: np.ndarray, draws: _DayDraws,
                 history: list[pd.DataFrame]):
        self.name, self.policy, self.world, self.day = name, policy, world, day
        self.user_ids, self.draws, self.history = user_ids, draws, history

    def __call__(self, active: np.ndarray) -> Slate:
        cand = self.draws.candidates[active]
        history = pd.concat(self.history, ignore_index=True) if len(self.history) > 1 else self.history[0]
        scores = np.asarray(self.policy.score(self.day, self.user_ids[active], self.world.item_ids[cand], history),
                            np.float64)
        if scores.shape != cand.shape:
            raise ValueError(f"policy '{self.name}' returned scores of shape {scores.shape}, expected {cand.shape}")
        scores = np.where(np.isnan(scores), -np.inf, scores)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :self.draws.times.shape[1]]
        return Slate(np.take_along_axis(cand, top, 1), self.draws.times[active],
                     {k: v[active] for k, v in self.draws.noise.items()})


def lifetime_from_activity(active: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user: first active day (-1 = never) and LT_window (NaN where the window does not fit)."""
    n_days = active.shape[1]
    ever = active.any(1)
    first = np.where(ever, active.argmax(1), -1)
    csum = np.concatenate([np.zeros((len(active), 1), np.int64), np.cumsum(active, 1)], axis=1)
    fits = ever & (first + window <= n_days)
    end = np.minimum(first + window, n_days)
    rows = np.arange(len(active))
    lt = csum[rows, end.clip(0)] - csum[rows, first.clip(0)]
    return first, np.where(fits, lt, np.nan).astype(np.float64)


def run_simulation(world: World, policies: dict[str, Policy], cfg: SimulationConfig | None = None,
                   history: pd.DataFrame | None = None, baseline: str | None = None,
                   keep_interactions: bool = False) -> SimulationResult:
    """Simulate every policy under common random numbers; see simulate_lifetime for the summary columns."""
    cfg = cfg or SimulationConfig()
    if not policies:
        raise ValueError("simulate: no policies given")
    if baseline is not None and baseline not in policies:
        raise ValueError(f"simulate: baseline '{baseline}' is not one of the policies {list(policies)}")
    law = world.law
    start_day = world.end_day if cfg.start_day is None else cfg.start_day
    base_history = _empty_history() if history is None else history[list(LOG_COLUMNS)]
    if len(base_history) and base_history["timestamp"].max() >= world.timestamp(start_day):
        raise ValueError(f"simulate: history reaches {base_history['timestamp'].max()}, after the simulation "
                         f"start {world.timestamp(start_day)} (day {start_day})")
    all_users = np.arange(len(world.user_ids))
    if cfg.n_users is not None and cfg.n_users < len(all_users):
        users = np.sort(np.random.default_rng([cfg.seed, 2]).choice(all_users, cfg.n_users, replace=False))
    else:
        users = all_users
    user_ids = world.user_ids[users]
    n_u, names = len(users), list(policies)
    memory = {p: law.initial_memory(n_u) for p in names}
    active = {p: np.zeros((n_u, cfg.n_days), bool) for p in names}
    likes = {p: np.zeros(n_u) for p in names}
    shown = {p: np.zeros(n_u) for p in names}
    sums = {p: np.zeros(3) for p in names}  # like, finish, watch_ratio sums over impressions
    sim_frames: dict[str, list[pd.DataFrame]] = {p: [] for p in names}

    for d in tqdm(range(cfg.n_days), desc="simulate lifetime", unit="day", disable=None):
        day = start_day + d
        draws = _draw_day(world, cfg, day, n_u)
        for name in names:
            slates = _RankedSlates(name, policies[name], world, day, user_ids, draws, [base_history, *sim_frames[name]])
            today = replay_day(law, users, memory[name], draws.returns, slates)
            memory[name], active[name][:, d] = today.memory, today.active
            sessions = today.sessions
            if sessions is None:
                continue
            r = sessions.responses
            likes[name][sessions.users] += r["like"].sum(1)
            shown[name][sessions.users] += sessions.items.shape[1]
            sums[name] += [r[c].sum() for c in LABEL_COLUMNS]
            log = sessions.log(user_ids, world.item_ids, world.start)
            sim_frames[name].append(log.astype({"timestamp": "datetime64[us, UTC]"}).sort_values("timestamp",
                                                                                                 kind="stable"))

    per_user, lts = [], {}
    for name in names:
        cols = {}
        for w in LT_WINDOWS:
            first, cols[f"lt{w}"] = lifetime_from_activity(active[name], w)
        lts[name] = cols
        per_user.append(pd.DataFrame({"policy": name, "user_id": user_ids,
                                      "first_day": np.where(first >= 0, first + start_day, -1),
                                      **cols, "active_days": active[name].sum(1), "likes": likes[name],
                                      "shown": shown[name]}))
    rows = []
    for name in names:
        n_imp = shown[name].sum()
        row = {"policy": name, "users": n_u}
        for w in LT_WINDOWS:
            v = lts[name][f"lt{w}"]
            row[f"n_lt{w}"] = int((~np.isnan(v)).sum())
            row[f"lt{w}"], row[f"lt{w}_lo"], row[f"lt{w}_hi"] = mean_ci(v, cfg.bootstrap, cfg.seed, 1 - cfg.ci)
        if baseline is not None:
            for w in LT_WINDOWS:
                diff = lts[name][f"lt{w}"] - lts[baseline][f"lt{w}"]
                row[f"lt{w}_diff"], row[f"lt{w}_diff_lo"], row[f"lt{w}_diff_hi"] = mean_ci(diff, cfg.bootstrap,
                                                                                           cfg.seed, 1 - cfg.ci)
                base_mean = np.nanmean(lts[baseline][f"lt{w}"]) if (~np.isnan(lts[baseline][f"lt{w}"])).any() \
                    else np.nan
                row[f"lt{w}_diff_pct"] = 100 * row[f"lt{w}_diff"] / base_mean
        row["active_days"] = float(active[name].sum(1).mean())
        row["impressions"] = int(n_imp)
        for c, s in zip(LABEL_COLUMNS, sums[name]):
            row[f"{c}_rate" if c != "watch_ratio" else "mean_watch_ratio"] = float(s / n_imp) if n_imp else np.nan
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("policy")
    interactions = {}
    if keep_interactions:
        interactions = {n: pd.concat(f, ignore_index=True) if f else _empty_history()
                        for n, f in sim_frames.items()}
    return SimulationResult(summary, pd.concat(per_user, ignore_index=True), interactions)


def simulate_lifetime(world: World, policies: dict[str, Policy], cfg: SimulationConfig | None = None,
                      history: pd.DataFrame | None = None, baseline: str | None = None) -> pd.DataFrame:
    """LT7/LT14 of each policy under common random numbers.

    world: `recsys.world.load_world(ds.root)`; history: the policies' knowledge before the simulation (normally
    `ds.interactions`; must end before the simulation's first day); baseline: a policy name for paired differences.
    Returns one row per policy (index `policy`) with columns users, n_lt7, lt7, lt7_lo, lt7_hi, n_lt14, lt14,
    lt14_lo, lt14_hi, [lt7_diff, lt7_diff_lo, lt7_diff_hi, lt7_diff_pct, lt14_diff, ... when baseline is given],
    active_days, impressions, like_rate, finish_rate, mean_watch_ratio.
    """
    return run_simulation(world, policies, cfg, history, baseline).summary
