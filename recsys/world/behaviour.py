"""The behaviour law of the synthetic world: how users respond to an item and whether they come back.

One explicit object, `BehaviourLaw`, is used both to generate the dataset's interaction log (under the logging
policy) and by the lifetime simulator (under a ranker's policy), so the simulator replays exactly the law that
produced the training data.

Response to an impression of item i shown to user u on day d::

    utility(u, i, d) = bias
                     + w_topic     * interest[u] . topic_mix[i]          content: visible in text/image/audio
                     + w_style     * style_pref[u, style[i]]             content: visible in texture/timbre/words
                     + w_quality   * quality_taste[u] * quality[i]       collaborative: no modality shows it
                     + w_community * community_aff[u, community[i]]      collaborative
                     + w_hype      * hype[i] * exp(-age(i, d) / decay)   collaborative, fades with item age
    e ~ N(0, engagement_noise)                                          shared by like and watch
    like        = U < sigmoid(utility + e)                               U ~ Uniform(0, 1)
    watch_ratio = sigmoid(watch_slope * (utility + e) + watch_offset + N(0, watch_noise))
    finish      = watch_ratio >= finish_threshold

Return law: a session's satisfaction is `mean(watch_ratio) + like_weight * mean(like)`; the user comes back the
next day with probability `sigmoid(base_logit[u] + return_gain * (memory - satisfaction_ref))` where memory is
the last session's satisfaction, drifting back to `satisfaction_ref` (the satisfaction of random exposure) by
`memory_decay` per day of absence.

All index arguments are positional indices (0..n-1) into the law's user and item arrays and broadcast numpy-style.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

ARRAY_FIELDS = ("user_interest", "user_style", "user_quality_taste", "user_community", "user_base_logit",
                "item_topic_mix", "item_style", "item_quality", "item_community", "item_hype", "item_created_day")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class BehaviourLaw:
    """Response and return law of a synthetic world (see module docstring for the formulas)."""

    # users [U, ...]
    user_interest: np.ndarray        # [U, K] float32, max 1 per user
    user_style: np.ndarray           # [U, S] float32, style preference
    user_quality_taste: np.ndarray   # [U] float32
    user_community: np.ndarray       # [U, C] float32 0/1 affinity
    user_base_logit: np.ndarray      # [U] float32, daily return logit at reference satisfaction
    # items [N, ...]
    item_topic_mix: np.ndarray       # [N, K] float32, rows sum to 1
    item_style: np.ndarray           # [N] int64
    item_quality: np.ndarray         # [N] float32
    item_community: np.ndarray       # [N] int64
    item_hype: np.ndarray            # [N] float32 >= 0
    item_created_day: np.ndarray     # [N] float64, days since world start (negative = before day 0)
    # scalars
    bias: float = 0.0
    w_topic: float = 3.0
    w_style: float = 0.6
    w_quality: float = 1.0
    w_community: float = 2.0
    w_hype: float = 0.5
    hype_decay_days: float = 10.0
    engagement_noise: float = 0.6
    watch_slope: float = 1.0
    watch_offset: float = 1.2
    watch_noise: float = 0.6
    finish_threshold: float = 0.9
    like_weight: float = 1.0
    return_gain: float = 3.0
    satisfaction_ref: float = 0.5
    memory_decay: float = 0.7

    @property
    def n_users(self) -> int:
        return len(self.user_base_logit)

    @property
    def n_items(self) -> int:
        return len(self.item_quality)

    # ---- utility ------------------------------------------------------------------------------------------------
    def content_utility(self, user_idx, item_idx) -> np.ndarray:
        """Part of the utility that the item's modalities reveal (topics and style)."""
        u, i = np.asarray(user_idx), np.asarray(item_idx)
        topic = np.einsum("...k,...k->...", self.user_interest[u], self.item_topic_mix[i])
        style = self.user_style[u, self.item_style[i]]
        return (self.w_topic * topic + self.w_style * style).astype(np.float32)

    def collaborative_utility(self, user_idx, item_idx, day=None) -> np.ndarray:
        """Part of the utility no modality shows (quality, community, hype): only behaviour reveals it."""
        u, i = np.asarray(user_idx), np.asarray(item_idx)
        out = self.w_quality * self.user_quality_taste[u] * self.item_quality[i]
        out = out + self.w_community * self.user_community[u, self.item_community[i]]
        if day is not None and self.w_hype:
            age = np.maximum(np.asarray(day, dtype=np.float64) - self.item_created_day[i], 0.0)
            out = out + self.w_hype * self.item_hype[i] * np.exp(-age / self.hype_decay_days)
        return out.astype(np.float32)

    def utility(self, user_idx, item_idx, day=None) -> np.ndarray:
        """Mean like logit of user x item on `day` (days since world start; None = no hype term)."""
        return (self.bias + self.content_utility(user_idx, item_idx)
                + self.collaborative_utility(user_idx, item_idx, day)).astype(np.float32)

    def like_probability(self, user_idx, item_idx, day=None) -> np.ndarray:
        """P(like), integrating the engagement noise (probit approximation of the logistic-normal)."""
        util = self.utility(user_idx, item_idx, day)
        return sigmoid(util / np.sqrt(1 + np.pi * self.engagement_noise ** 2 / 8)).astype(np.float32)

    # ---- response -----------------------------------------------------------------------------------------------
    @staticmethod
    def draw_noise(rng: np.random.Generator, shape) -> dict[str, np.ndarray]:
        """Standard noise for `shape` impressions; pass the same draws to `respond` for common random numbers."""
        return {"engagement": rng.standard_normal(shape).astype(np.float32),
                "like": rng.random(shape, dtype=np.float32),
                "watch": rng.standard_normal(shape).astype(np.float32)}

    def respond(self, user_idx, item_idx, rng: np.random.Generator | None = None, *, day=None,
                noise: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Responses like/finish/watch_ratio (float32 arrays, broadcast shape of the indices).

        Noise comes from `noise` (see draw_noise) when given, else is drawn from `rng`.
        """
        util = self.utility(user_idx, item_idx, day)
        if noise is None:
            if rng is None:
                raise ValueError("respond needs rng or noise")
            noise = self.draw_noise(rng, util.shape)
        z = util + self.engagement_noise * noise["engagement"]
        like = (noise["like"] < sigmoid(z)).astype(np.float32)
        watch = sigmoid(self.watch_slope * z + self.watch_offset + self.watch_noise * noise["watch"])
        watch = watch.astype(np.float32)
        finish = (watch >= self.finish_threshold).astype(np.float32)
        return {"like": like, "finish": finish, "watch_ratio": watch}

    # ---- return law ---------------------------------------------------------------------------------------------
    def session_satisfaction(self, like: np.ndarray, watch_ratio: np.ndarray,
                             mask: np.ndarray | None = None) -> np.ndarray:
        """Satisfaction of each session (last axis = impressions of the session; mask marks real slots)."""
        like, watch = np.asarray(like, np.float64), np.asarray(watch_ratio, np.float64)
        if mask is None:
            mask = np.ones_like(like, dtype=bool)
        n = np.maximum(mask.sum(-1), 1)
        return ((watch * mask).sum(-1) + self.like_weight * (like * mask).sum(-1)) / n

    def return_probability(self, satisfaction, user_idx) -> np.ndarray:
        """Chance that a user whose remembered satisfaction is `satisfaction` is active the next day."""
        logit = self.user_base_logit[np.asarray(user_idx)] + self.return_gain * (
            np.asarray(satisfaction, np.float64) - self.satisfaction_ref)
        return sigmoid(logit)

    def update_memory(self, memory: np.ndarray, satisfaction: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Remembered satisfaction after a day: the session's when active, else drifting back to the reference."""
        drift = self.memory_decay * memory + (1 - self.memory_decay) * self.satisfaction_ref
        return np.where(active, satisfaction, drift)

    def initial_memory(self, n: int) -> np.ndarray:
        return np.full(n, self.satisfaction_ref, dtype=np.float64)

    # ---- persistence --------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write law.json (scalars) and law.npz (arrays) into `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        scalars = {f.name: float(getattr(self, f.name)) for f in fields(self) if f.name not in ARRAY_FIELDS}
        (d / "law.json").write_text(json.dumps(scalars, indent=2, sort_keys=True))
        with open(d / "law.npz", "wb") as fh:
            np.savez(fh, **{name: getattr(self, name) for name in ARRAY_FIELDS})

    @classmethod
    def load(cls, directory: str | Path) -> BehaviourLaw:
        d = Path(directory)
        scalars = json.loads((d / "law.json").read_text())
        with np.load(d / "law.npz") as z:
            arrays = {name: z[name] for name in ARRAY_FIELDS}
        return cls(**arrays, **scalars)
