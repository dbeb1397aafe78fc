"""One day of sessions under a policy: who comes back, what they are shown, how they respond, what they remember.

The dataset generator (`generator.simulate_log`, under the logging policy) and the lifetime simulator
(`ranking.simulate`, under ranker policies) both step their users through `replay_day`, so the simulator replays
exactly the daily process that produced the training log. Only the slates differ, and where the random numbers
come from: the generator draws everything from its log stream in order, the simulator hands in common random
numbers (return draws and response noise that do not depend on the policy).

A day: user u is active when return_draws[u] < law.return_probability(memory[u]); each active user is shown a
slate (one session) and responds by the law; the session's satisfaction becomes the user's memory, an inactive
user's memory drifts back to the reference (`BehaviourLaw.update_memory`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.world.behaviour import BehaviourLaw

SECONDS_PER_DAY = 86400.0
"""Times in the world are fractional days since its start (`World.start`)."""
LOG_COLUMNS = ("user_id", "item_id", "timestamp", "like", "finish", "watch_ratio")


@dataclass
class Slate:
    """What the active users see: items [A, k] (item indices) at times [A, k] (fractional days).

    noise: response noise [A, k] per `BehaviourLaw.draw_noise` key (common random numbers), or None to draw it
    from the day's generator.
    """

    items: np.ndarray
    times: np.ndarray
    noise: dict[str, np.ndarray] | None = None


SlatePolicy = Callable[[np.ndarray], "Slate | None"]
"""active [A] (positions into the replayed users) -> their slates, or None when there is nothing to show."""


@dataclass
class Sessions:
    """The day's sessions: users [A] (positions into the replayed users), items, times and responses [A, k]."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    responses: dict[str, np.ndarray]

    def log(self, user_ids: np.ndarray, item_ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
        """Impression rows (LOG_COLUMNS) in session order; `user_ids`/`item_ids` map positions to ids."""
        k = self.items.shape[1]
        micros = np.round(self.times.ravel() * SECONDS_PER_DAY * 1e6).astype(np.int64)
        return pd.DataFrame({"user_id": np.repeat(user_ids[self.users], k), "item_id": item_ids[self.items].ravel(),
                             "timestamp": start + pd.to_timedelta(micros, unit="us"),
                             **{c: self.responses[c].ravel() for c in LOG_COLUMNS[3:]}})


@dataclass
class Day:
    active: np.ndarray               # [U] bool
    memory: np.ndarray               # [U] remembered satisfaction after the day
    sessions: Sessions | None        # None when nobody was shown anything


def replay_day(law: BehaviourLaw, users: np.ndarray, memory: np.ndarray, return_draws: np.ndarray,
               policy: SlatePolicy, rng: np.random.Generator | None = None) -> Day:
    """Step users [U] (indices into the law) through one day; return_draws [U] uniforms decide who returns.

    `rng` supplies the response noise when the slate carries none (drawn after the policy made the slates).
    """
    active = return_draws < law.return_probability(memory, users)
    shown = np.flatnonzero(active)
    satisfaction = np.zeros(len(users))
    slate = policy(shown) if len(shown) else None
    sessions = None
    if slate is not None:
        responses = law.respond(users[shown][:, None], slate.items, rng, day=slate.times, noise=slate.noise)
        satisfaction[shown] = law.session_satisfaction(responses["like"], responses["watch_ratio"])
        sessions = Sessions(shown, slate.items, slate.times, responses)
    return Day(active, law.update_memory(memory, satisfaction, active), sessions)
