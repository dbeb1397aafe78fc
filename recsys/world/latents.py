"""Latent ground truth of the synthetic world: item content and collaborative latents, user tastes, and the
behaviour law built from them. Randomness comes from independent streams (`stream(seed, STREAM)`), so e.g.
changing the text noise does not change the users' behaviour."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from recsys.world.behaviour import BehaviourLaw, sigmoid
from recsys.world.config import WorldConfig

# independent random streams
S_ITEMS, S_USERS, S_TEXT, S_LOG, S_QUERIES, S_CALIB = 1, 2, 3, 4, 5, 6


def stream(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


# ---- latents ---------------------------------------------------------------------------------------------------

@dataclass
class ItemLatents:
    """Ground truth of items (positional index = item_id - 1)."""

    primary_topic: np.ndarray    # [N] int64
    secondary_topic: np.ndarray  # [N] int64, -1 = none
    topic_mix: np.ndarray        # [N, K] float32, rows sum to 1 (content)
    style: np.ndarray            # [N] int64 (content)
    quality: np.ndarray          # [N] float32 (collaborative)
    community: np.ndarray        # [N] int64 (collaborative)
    hype: np.ndarray             # [N] float32 (collaborative)
    created_day: np.ndarray      # [N] float64, days since world start

    def content(self, n_styles: int) -> np.ndarray:
        """Latent content vector [N, K + S]: topic mix and one-hot style."""
        return np.concatenate([self.topic_mix, np.eye(n_styles, dtype=np.float32)[self.style]], axis=1)


@dataclass
class UserLatents:
    """Ground truth of users (positional index = user_id - 1)."""

    interest: np.ndarray         # [U, K] float32, max 1
    style_pref: np.ndarray       # [U, S] float32
    quality_taste: np.ndarray    # [U] float32
    community: np.ndarray        # [U, C] float32 0/1
    base_logit: np.ndarray       # [U] float32, daily return logit at reference satisfaction
    preferred_hour: np.ndarray   # [U] float32, time of day of sessions


def dataclass_arrays(obj, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{f.name}": getattr(obj, f.name) for f in fields(obj)}


def dataclass_from_arrays(cls, z, prefix: str):
    return cls(**{f.name: z[f"{prefix}{f.name}"] for f in fields(cls)})


def topic_popularity(cfg: WorldConfig) -> np.ndarray:
    rng = stream(cfg.seed, S_ITEMS, 0)
    p = (np.arange(cfg.n_topics) + 1.0) ** -cfg.topic_zipf
    return (p / p.sum())[rng.permutation(cfg.n_topics)]


def generate_item_latents(cfg: WorldConfig) -> ItemLatents:
    rng = stream(cfg.seed, S_ITEMS)
    n, k = cfg.n_items, cfg.n_topics
    primary = rng.choice(k, size=n, p=topic_popularity(cfg))
    has_second = rng.random(n) < cfg.secondary_topic_prob
    shift = rng.integers(1, k, size=n)
    secondary = np.where(has_second, (primary + shift) % k, -1)
    mix = np.zeros((n, k), np.float32)
    w2 = rng.uniform(0.25, 0.45, size=n)
    mix[np.arange(n), primary] = np.where(has_second, 1 - w2, 1.0)
    mix[np.arange(n)[has_second], secondary[has_second]] = w2[has_second]
    style = rng.integers(0, cfg.n_styles, size=n)
    quality = rng.standard_normal(n).astype(np.float32)
    community = rng.integers(0, cfg.n_communities, size=n)
    hype = rng.exponential(cfg.hype_scale, size=n).astype(np.float32) if cfg.hype_scale > 0 else np.zeros(n, np.float32)
    initial = rng.random(n) < cfg.initial_item_fraction
    created = np.where(initial, -rng.uniform(0, cfg.initial_item_days, size=n), rng.uniform(0, cfg.n_days, size=n))
    return ItemLatents(primary.astype(np.int64), secondary.astype(np.int64), mix, style.astype(np.int64), quality,
                       community.astype(np.int64), hype, created.astype(np.float64))


def generate_user_latents(cfg: WorldConfig) -> UserLatents:
    rng = stream(cfg.seed, S_USERS)
    u, k = cfg.n_users, cfg.n_topics
    pop = np.sqrt(topic_popularity(cfg))
    pop /= pop.sum()
    interest = np.zeros((u, k), np.float32)
    community = np.zeros((u, cfg.n_communities), np.float32)
    for j in range(u):
        m = rng.integers(cfg.interest_peaks[0], cfg.interest_peaks[1] + 1)
        peaks = rng.choice(k, size=m, replace=False, p=pop)
        interest[j] = cfg.interest_floor / k
        interest[j, peaks] += rng.dirichlet(np.full(m, 2.0))
        c = rng.integers(cfg.user_communities[0], cfg.user_communities[1] + 1)
        community[j, rng.choice(cfg.n_communities, size=c, replace=False)] = 1.0
    interest /= interest.max(axis=1, keepdims=True)
    style_pref = rng.standard_normal((u, cfg.n_styles)).astype(np.float32)
    quality_taste = np.exp(0.3 * rng.standard_normal(u)).astype(np.float32)
    p = np.clip(rng.beta(*cfg.activity_beta, size=u), 0.02, 0.98)
    base_logit = np.log(p / (1 - p)).astype(np.float32)
    hour = rng.uniform(7, 23, size=u).astype(np.float32)
    return UserLatents(interest, style_pref, quality_taste, community, base_logit, hour)


def build_law(cfg: WorldConfig, items: ItemLatents, users: UserLatents) -> BehaviourLaw:
    """The world's behaviour law, with bias and reference satisfaction calibrated on random exposure."""
    law = BehaviourLaw(
        user_interest=users.interest, user_style=users.style_pref, user_quality_taste=users.quality_taste,
        user_community=users.community, user_base_logit=users.base_logit,
        item_topic_mix=items.topic_mix, item_style=items.style, item_quality=items.quality,
        item_community=items.community, item_hype=items.hype, item_created_day=items.created_day,
        bias=0.0, w_topic=cfg.w_topic, w_style=cfg.w_style, w_quality=cfg.w_quality, w_community=cfg.w_community,
        w_hype=cfg.w_hype, hype_decay_days=cfg.hype_decay_days, engagement_noise=cfg.engagement_noise,
        watch_slope=cfg.watch_slope, watch_offset=cfg.watch_offset, watch_noise=cfg.watch_noise,
        finish_threshold=cfg.finish_threshold, like_weight=cfg.like_weight, return_gain=cfg.return_gain,
        satisfaction_ref=0.0, memory_decay=cfg.memory_decay)
    rng = stream(cfg.seed, S_CALIB)
    m = 20000
    uu = rng.integers(0, cfg.n_users, m)
    ii = rng.integers(0, cfg.n_items, m)
    day = np.maximum(items.created_day[ii], 0) + rng.uniform(0, 7, m)
    x = law.utility(uu, ii, day).astype(np.float64)
    z = law.engagement_noise * rng.standard_normal(m)
    lo, hi = -20.0, 20.0
    for _ in range(60):  # bisection: mean like probability of random exposure = target
        mid = (lo + hi) / 2
        if sigmoid(mid + x + z).mean() > cfg.target_like_rate:
            hi = mid
        else:
            lo = mid
    law.bias = float((lo + hi) / 2)
    # reference satisfaction = mean satisfaction of a session of uniformly random items
    s = cfg.session_size
    n_sessions = max(1, m // s)
    uu = rng.integers(0, cfg.n_users, (n_sessions, 1))
    ii = rng.integers(0, cfg.n_items, (n_sessions, s))
    day = np.maximum(items.created_day[ii], 0) + rng.uniform(0, 7, (n_sessions, s))
    r = law.respond(uu, ii, rng, day=day)
    law.satisfaction_ref = float(law.session_satisfaction(r["like"], r["watch_ratio"]).mean())
    return law
