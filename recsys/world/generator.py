"""Generate a synthetic omni-modal world: latents (latents.py), texts and queries (texts.py) and an impression log
under the logging policy (media: render.py).

Items have a latent content part (topic mix, style) that every modality renders with noise, and a latent
collaborative part (quality, community, hype) that no modality shows. Users have 2-3 interest peaks over topics,
a style preference, a taste for quality, home communities and an activity level. The interaction log replays a
logging policy (popularity / random / weak topic match) through the world's `BehaviourLaw`, day by day, with users
returning according to how satisfied their last session left them.

Randomness is split into independent streams (`np.random.default_rng([seed, STREAM])`), so e.g. changing the text
noise does not change the users' behaviour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import DataError
from recsys.world.behaviour import BehaviourLaw
from recsys.world.config import WorldConfig
from recsys.world.latents import (
    S_LOG,
    ItemLatents,
    UserLatents,
    build_law,
    dataclass_arrays,
    dataclass_from_arrays,
    generate_item_latents,
    generate_user_latents,
    stream,
)
from recsys.world.replay import LOG_COLUMNS, SECONDS_PER_DAY, Sessions, Slate, replay_day
from recsys.world.texts import ItemTexts, generate_queries, generate_texts
from recsys.world.vocabulary import STYLES, TOPICS

# ---- impression log under the logging policy -------------------------------------------------------------------

class LoggingPolicy:
    """The policy that logged the dataset: a popularity / random / weak topic match mixture, Plackett-Luce sampled.

    Popularity = like counts decayed by 0.9 per day (`observe` adds a day's likes, `end_day` decays). Slates and
    session times draw from the log stream `rng` in a fixed order: the generated world depends on it.
    """

    def __init__(self, cfg: WorldConfig, law: BehaviourLaw, users: UserLatents, rng: np.random.Generator):
        self.cfg, self.law, self.users, self.rng = cfg, law, users, rng
        w = np.array([cfg.policy_popularity, cfg.policy_random, cfg.policy_topic], np.float64)
        self.weights = w / w.sum()
        self.popularity = np.zeros(cfg.n_items, np.float64)

    def slate(self, day: int, active: np.ndarray) -> Slate | None:
        avail = np.flatnonzero(self.law.item_created_day < day)
        if not len(avail):
            return None
        rng, law, w = self.rng, self.law, self.weights
        k = min(self.cfg.session_size, len(avail))
        pop = self.popularity[avail] + 1.0
        match = law.user_interest[active] @ law.item_topic_mix[avail].T      # [A, M]
        p = w[0] * (pop / pop.sum())[None] + w[1] / len(avail) + w[2] * (match / match.sum(1, keepdims=True))
        keys = np.log(p) + rng.gumbel(size=p.shape)                           # Plackett-Luce sampling
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), 1), 1)
        offset = rng.uniform(0, 0.5, (len(active), 1)) + np.arange(k)[None] * rng.uniform(20, 60, (len(active), 1))
        hour = np.clip(self.users.preferred_hour[active] + 1.5 * rng.standard_normal(len(active)), 0, 23.5)
        return Slate(avail[top], day + (hour[:, None] * 3600 + offset) / SECONDS_PER_DAY)

    def observe(self, sessions: Sessions) -> None:
        np.add.at(self.popularity, sessions.items.ravel(), sessions.responses["like"].ravel())

    def end_day(self) -> None:
        self.popularity *= 0.9


def simulate_log(cfg: WorldConfig, law: BehaviourLaw, users: UserLatents, start: pd.Timestamp) -> pd.DataFrame:
    """Impression log of n_days under the logging policy, replayed day by day (`replay.replay_day`)."""
    rng = stream(cfg.seed, S_LOG)
    policy = LoggingPolicy(cfg, law, users, rng)
    user_idx = np.arange(cfg.n_users)
    user_ids = np.arange(1, cfg.n_users + 1, dtype=np.int64)
    item_ids = np.arange(1, cfg.n_items + 1, dtype=np.int64)
    memory = law.initial_memory(cfg.n_users)
    chunks = []
    for day in range(cfg.n_days):
        returns = rng.random(cfg.n_users)
        today = replay_day(law, user_idx, memory, returns, partial(policy.slate, day), rng)
        memory = today.memory
        if today.sessions is not None:
            policy.observe(today.sessions)
            chunks.append(today.sessions.log(user_ids, item_ids, start))
        policy.end_day()
    return pd.concat(chunks, ignore_index=True)[list(LOG_COLUMNS)]


# ---- the world -------------------------------------------------------------------------------------------------

@dataclass
class World:
    """Ground truth of a synthetic world (saved under `<dataset>/world/`)."""

    config: WorldConfig
    item_ids: np.ndarray        # [N] int64 (= index + 1)
    user_ids: np.ndarray        # [U] int64 (= index + 1)
    items: ItemLatents
    users: UserLatents
    law: BehaviourLaw
    start: pd.Timestamp         # day 0, UTC
    end_day: int                # first day after the dataset (the simulator starts here)

    @property
    def topic_names(self) -> list[str]:
        return [TOPICS[t][0] for t in range(self.config.n_topics)]

    @property
    def style_names(self) -> list[str]:
        return [STYLES[s][0] for s in range(self.config.n_styles)]

    @property
    def item_content(self) -> np.ndarray:
        """Latent content vector per item [N, K + S] (topic mix, one-hot style)."""
        return self.items.content(self.config.n_styles)

    def available_mask(self, day: float) -> np.ndarray:
        """Items that exist at the start of `day` (days since world start); items are never shown before."""
        return self.items.created_day < day

    def available_items(self, day: float) -> np.ndarray:
        """Item ids available on `day`."""
        return self.item_ids[self.available_mask(day)]

    def item_index(self, item_ids) -> np.ndarray:
        idx = np.asarray(item_ids, np.int64) - 1
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.item_ids)):
            raise KeyError("item id not in the world")
        return idx

    def user_index(self, user_ids) -> np.ndarray:
        idx = np.asarray(user_ids, np.int64) - 1
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.user_ids)):
            raise KeyError("user id not in the world")
        return idx

    def timestamp(self, day) -> pd.DatetimeIndex | pd.Timestamp:
        """UTC timestamp(s) of fractional day(s) since world start."""
        if np.ndim(day) == 0:
            return self.start + pd.Timedelta(seconds=float(day) * SECONDS_PER_DAY)
        return self.start + pd.to_timedelta(np.asarray(day, np.float64) * SECONDS_PER_DAY, unit="s")

    def day_of(self, timestamps) -> np.ndarray:
        """Fractional days since world start of UTC timestamps."""
        ts = pd.to_datetime(pd.Series(timestamps), utc=True)
        return ((ts - self.start).dt.total_seconds() / SECONDS_PER_DAY).to_numpy()

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.law.save(d)
        with open(d / "latents.npz", "wb") as fh:
            np.savez(fh, item_ids=self.item_ids, user_ids=self.user_ids,
                     **dataclass_arrays(self.items, "item_"), **dataclass_arrays(self.users, "user_"))
        meta = {"config": self.config.model_dump(mode="json"), "start": self.start.isoformat(),
                "end_day": self.end_day, "topics": self.topic_names, "styles": self.style_names}
        (d / "world.json").write_text(json.dumps(meta, indent=2))


def load_world(dataset_root: str | Path) -> World:
    """Load the ground truth of a synthetic dataset (`<dataset_root>/world/`)."""
    d = Path(dataset_root) / "world"
    if not (d / "world.json").is_file():
        raise DataError("no synthetic world ground truth (world/world.json); prepare a synthetic dataset",
                        file=str(dataset_root))
    meta = json.loads((d / "world.json").read_text())
    with np.load(d / "latents.npz") as z:
        items = dataclass_from_arrays(ItemLatents, z, "item_")
        users = dataclass_from_arrays(UserLatents, z, "user_")
        item_ids, user_ids = z["item_ids"], z["user_ids"]
    return World(WorldConfig.model_validate(meta["config"]), item_ids, user_ids, items, users,
                 BehaviourLaw.load(d), pd.Timestamp(meta["start"]), int(meta["end_day"]))


@dataclass
class WorldSample:
    """A generated world plus its tables (items without media paths; media are added by render.py)."""

    world: World
    items: pd.DataFrame
    interactions: pd.DataFrame
    queries: pd.DataFrame
    users: pd.DataFrame
    texts: ItemTexts


def generate_world(cfg: WorldConfig) -> WorldSample:
    """Latents, law, texts, queries and the logged interactions of a world (deterministic in cfg.seed)."""
    start = pd.Timestamp(cfg.start_date, tz="UTC")
    items = generate_item_latents(cfg)
    users = generate_user_latents(cfg)
    law = build_law(cfg, items, users)
    texts = generate_texts(cfg, items)
    world = World(cfg, np.arange(1, cfg.n_items + 1, dtype=np.int64), np.arange(1, cfg.n_users + 1, dtype=np.int64),
                  items, users, law, start, cfg.n_days)
    created = start + pd.to_timedelta(np.round(items.created_day * SECONDS_PER_DAY * 1e6).astype(np.int64),
                                      unit="us")
    items_df = pd.DataFrame({
        "item_id": world.item_ids, "created_at": created, "title": texts.title, "description": texts.description,
        "author": texts.author, "tags": texts.tags, "categories": texts.categories})
    interactions = simulate_log(cfg, law, users, start)
    queries = generate_queries(cfg, items, texts, start)
    users_df = pd.DataFrame({"user_id": world.user_ids})
    return WorldSample(world, items_df, interactions, queries, users_df, texts)
