"""Generate a synthetic omni-modal world: latents, texts, queries and an impression log (media: render.py).

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
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.errors import DataError
from recsys.world.behaviour import BehaviourLaw, sigmoid
from recsys.world.config import WorldConfig

# ---- vocabularies ----------------------------------------------------------------------------------------------

TOPICS: list[tuple[str, list[str]]] = [
    ("cooking", ["recipe", "kitchen", "pasta", "bake", "chef", "spicy", "dessert", "soup", "grill", "flavor",
                 "noodle", "sauce", "oven", "breakfast"]),
    ("travel", ["beach", "mountain", "hotel", "flight", "island", "backpack", "city", "passport", "road", "trip",
                "sunset", "hiking", "cruise", "museum"]),
    ("football", ["goal", "striker", "stadium", "match", "penalty", "league", "goalkeeper", "dribble", "referee",
                  "tackle", "midfield", "derby", "trophy", "kickoff"]),
    ("music", ["guitar", "melody", "concert", "drum", "piano", "singer", "chorus", "band", "rhythm", "album",
               "vinyl", "violin", "lyrics", "studio"]),
    ("gaming", ["console", "level", "boss", "speedrun", "controller", "quest", "arcade", "multiplayer", "loot",
                "pixel", "respawn", "joystick", "esports", "dungeon"]),
    ("pets", ["puppy", "kitten", "dog", "cat", "leash", "paw", "fur", "vet", "parrot", "hamster", "bark", "purr",
              "treat", "aquarium"]),
    ("fitness", ["workout", "gym", "squat", "cardio", "yoga", "muscle", "stretch", "protein", "marathon", "pushup",
                 "dumbbell", "sprint", "pilates", "sweat"]),
    ("fashion", ["outfit", "dress", "sneaker", "jacket", "runway", "denim", "makeup", "handbag", "lipstick",
                 "jewelry", "boutique", "scarf", "heels", "wardrobe"]),
    ("science", ["experiment", "molecule", "telescope", "physics", "laboratory", "robot", "galaxy", "chemistry",
                 "microscope", "atom", "rocket", "fossil", "circuit", "theory"]),
    ("comedy", ["joke", "prank", "sketch", "standup", "laugh", "parody", "meme", "blooper", "sitcom", "punchline",
                "skit", "funny", "roast", "improv"]),
    ("cars", ["engine", "turbo", "drift", "garage", "sedan", "horsepower", "racing", "tire", "convertible",
              "gearbox", "exhaust", "motorsport", "pickup", "dashboard"]),
    ("nature", ["forest", "river", "wildlife", "flower", "waterfall", "eagle", "meadow", "rainforest", "glacier",
                "volcano", "butterfly", "canyon", "moss", "storm"]),
    ("art", ["painting", "canvas", "sketchbook", "sculpture", "watercolor", "gallery", "brush", "portrait", "mural",
             "pottery", "charcoal", "easel", "mosaic", "calligraphy"]),
    ("tech", ["smartphone", "laptop", "gadget", "unboxing", "software", "processor", "keyboard", "headphones",
              "drone", "app", "charger", "monitor", "coding", "server"]),
    ("dance", ["choreography", "ballet", "salsa", "hiphop", "tango", "breakdance", "routine", "spin", "ballroom",
               "tapdance", "groove", "twirl", "waltz", "flashmob"]),
    ("finance", ["stocks", "budget", "savings", "crypto", "investing", "mortgage", "dividend", "inflation", "taxes",
                 "portfolio", "banking", "loan", "retirement", "wallet"]),
]

STYLES: list[tuple[str, list[str]]] = [
    ("calm", ["calm", "relaxing", "gentle", "soothing", "slow"]),
    ("energetic", ["energetic", "hype", "fast", "intense", "loud"]),
    ("vintage", ["vintage", "retro", "classic", "nostalgic", "oldschool"]),
    ("minimal", ["minimal", "clean", "sleek", "tidy", "plain"]),
    ("dramatic", ["dramatic", "epic", "cinematic", "dark", "moody"]),
    ("playful", ["playful", "cute", "colorful", "silly", "bubbly"]),
    ("cozy", ["cozy", "warm", "homey", "soft", "snug"]),
    ("raw", ["raw", "unfiltered", "handheld", "gritty", "candid"]),
]

NOISE_WORDS: list[str] = [
    "video", "today", "new", "best", "my", "watch", "check", "this", "first", "time", "ever", "day", "vlog",
    "part", "episode", "quick", "guide", "tips", "ultimate", "top", "ten", "how", "why", "story", "weekend",
    "live", "update", "review", "challenge", "moments", "highlights", "short", "clip", "official", "full",
    "version", "trying", "really", "with", "friends", "family", "morning", "night", "life", "real", "honest",
    "insane", "easy", "tutorial", "you", "must", "see", "again", "finally", "little", "big",
]

START_DAY_SECONDS = 86400.0

# independent random streams
_S_ITEMS, _S_USERS, _S_TEXT, _S_LOG, _S_QUERIES, _S_CALIB = 1, 2, 3, 4, 5, 6


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


def _save_dataclass(obj, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{f.name}": getattr(obj, f.name) for f in fields(obj)}


def _load_dataclass(cls, z, prefix: str):
    return cls(**{f.name: z[f"{prefix}{f.name}"] for f in fields(cls)})


def topic_popularity(cfg: WorldConfig) -> np.ndarray:
    rng = stream(cfg.seed, _S_ITEMS, 0)
    p = (np.arange(cfg.n_topics) + 1.0) ** -cfg.topic_zipf
    return (p / p.sum())[rng.permutation(cfg.n_topics)]


def generate_item_latents(cfg: WorldConfig) -> ItemLatents:
    rng = stream(cfg.seed, _S_ITEMS)
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
    rng = stream(cfg.seed, _S_USERS)
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
    rng = stream(cfg.seed, _S_CALIB)
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


# ---- texts -----------------------------------------------------------------------------------------------------

@dataclass
class ItemTexts:
    title: list[str | None]
    description: list[str | None]
    tags: list[list[str]]
    categories: list[list[str]]
    author: list[str]
    topic_words: list[list[str]]   # the (noise-free) topic words chosen for each item, used by its queries


def generate_texts(cfg: WorldConfig, items: ItemLatents) -> ItemTexts:
    rng = stream(cfg.seed, _S_TEXT)
    k = cfg.n_topics
    n_creators = max(5, cfg.n_items // 15)
    creator_topic = rng.integers(0, k, n_creators)
    by_topic = [np.flatnonzero(creator_topic == t) for t in range(k)]

    def noisy(word: str) -> str:
        if rng.random() < cfg.text_noise:
            t = rng.integers(0, k)
            return TOPICS[t][1][rng.integers(0, len(TOPICS[t][1]))]
        return word

    def pick(vocab: list[str], m: int) -> list[str]:
        return [vocab[j] for j in rng.choice(len(vocab), size=m, replace=False)]

    out = ItemTexts([], [], [], [], [], [])
    for i in range(cfg.n_items):
        t1, t2, st = int(items.primary_topic[i]), int(items.secondary_topic[i]), int(items.style[i])
        words1 = pick(TOPICS[t1][1], 5)
        words2 = pick(TOPICS[t2][1], 2) if t2 >= 0 else []
        style_words = pick(STYLES[st][1], 2)
        out.topic_words.append(words1 + words2)
        # title: 2 topic words (+1 of the second topic), maybe a style word, 1-2 noise words
        title = [noisy(w) for w in words1[:2] + words2[:1]]
        if rng.random() < 0.5:
            title.append(style_words[0])
        title += pick(NOISE_WORDS, int(rng.integers(1, 3)))
        rng.shuffle(title)
        # description: a sentence naming topic and style words, then a bag of noisy topic and noise words
        topic_desc = [noisy(w) for w in words1[2:] + words2[1:]]
        desc = (f"a {style_words[1]} clip about {noisy(words1[0])} and {noisy(words1[1])}. "
                + " ".join(rng.permutation(topic_desc + pick(NOISE_WORDS, int(rng.integers(4, 9)))).tolist()))
        tags = list(dict.fromkeys([noisy(w) for w in words1[:int(rng.integers(2, 4))] + words2[:1]]
                                  + ([style_words[0]] if rng.random() < 0.5 else [])))
        if rng.random() < 0.7 and len(by_topic[t1]):
            creator = by_topic[t1][rng.integers(0, len(by_topic[t1]))]
        else:
            creator = rng.integers(0, n_creators)
        out.title.append(" ".join(title).capitalize())
        out.description.append(desc)
        out.tags.append(tags)
        out.categories.append([TOPICS[t1][0]] + ([TOPICS[t2][0]] if t2 >= 0 else []))
        out.author.append(f"creator_{int(creator):03d}")
    # missing text fields (independent draws, after the text is made so rates don't change the text)
    n = cfg.n_items
    for name, rate in (("title", cfg.missing_title), ("description", cfg.missing_description)):
        miss = rng.random(n) < rate
        col = getattr(out, name)
        for i in np.flatnonzero(miss):
            col[i] = None
    miss = rng.random(n) < cfg.missing_tags
    for i in np.flatnonzero(miss):
        out.tags[i] = []
    return out


def generate_queries(cfg: WorldConfig, items: ItemLatents, texts: ItemTexts, start: pd.Timestamp) -> pd.DataFrame:
    """Search queries: 2-3 keywords of the item's topic vocabulary (mostly its own words), maybe a style word."""
    rng = stream(cfg.seed, _S_QUERIES)
    counts = rng.poisson(cfg.queries_per_item, cfg.n_items)
    rows_q, rows_i, rows_t = [], [], []
    for i in np.flatnonzero(counts):
        t1, st = int(items.primary_topic[i]), int(items.style[i])
        own = texts.topic_words[i]
        for _ in range(int(counts[i])):
            m = int(rng.integers(2, 4))
            words = [own[j] for j in rng.choice(len(own), size=m - 1, replace=False)]
            vocab = [w for w in TOPICS[t1][1] if w not in words]
            words.append(vocab[rng.integers(0, len(vocab))])
            if rng.random() < 0.3:
                words.append(STYLES[st][1][rng.integers(0, len(STYLES[st][1]))])
            words = list(dict.fromkeys(words))
            rng.shuffle(words)
            rows_q.append(" ".join(words))
            rows_i.append(i + 1)
            rows_t.append(max(items.created_day[i], -cfg.initial_item_days) + rng.exponential(2.0))
    ts = start + pd.to_timedelta(np.asarray(rows_t, np.float64) * START_DAY_SECONDS, unit="s")
    return pd.DataFrame({"query_text": rows_q, "item_id": np.asarray(rows_i, np.int64), "timestamp": ts})


# ---- impression log under the logging policy -------------------------------------------------------------------

def simulate_log(cfg: WorldConfig, law: BehaviourLaw, users: UserLatents, start: pd.Timestamp) -> pd.DataFrame:
    """Impression log of n_days under the logging policy (popularity / random / weak topic match mixture)."""
    rng = stream(cfg.seed, _S_LOG)
    u_all = np.arange(cfg.n_users)
    w = np.array([cfg.policy_popularity, cfg.policy_random, cfg.policy_topic], np.float64)
    w /= w.sum()
    pop = np.zeros(cfg.n_items, np.float64)  # decayed like counts
    memory = law.initial_memory(cfg.n_users)
    s = cfg.session_size
    chunks = []
    for day in range(cfg.n_days):
        active = rng.random(cfg.n_users) < law.return_probability(memory, u_all)
        avail = np.flatnonzero(law.item_created_day < day)
        satisfaction = np.zeros(cfg.n_users)
        au = np.flatnonzero(active)
        if len(au) and len(avail):
            k = min(s, len(avail))
            p_pop = (pop[avail] + 1.0) / (pop[avail] + 1.0).sum()
            match = law.user_interest[au] @ law.item_topic_mix[avail].T          # [A, M]
            p_topic = match / match.sum(1, keepdims=True)
            p = w[0] * p_pop[None] + w[1] / len(avail) + w[2] * p_topic
            keys = np.log(p) + rng.gumbel(size=p.shape)                         # Plackett-Luce sampling
            top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), 1), 1)
            shown = avail[top]                                                   # [A, k]
            offset = rng.uniform(0, 0.5, (len(au), 1)) + np.arange(k)[None] * rng.uniform(20, 60, (len(au), 1))
            hour = np.clip(users.preferred_hour[au] + 1.5 * rng.standard_normal(len(au)), 0, 23.5)
            t = day + (hour[:, None] * 3600 + offset) / START_DAY_SECONDS
            r = law.respond(au[:, None], shown, rng, day=t)
            satisfaction[au] = law.session_satisfaction(r["like"], r["watch_ratio"])
            np.add.at(pop, shown.ravel(), r["like"].ravel())
            chunks.append(pd.DataFrame({
                "user_id": np.repeat(au + 1, k).astype(np.int64), "item_id": (shown + 1).ravel().astype(np.int64),
                "t": t.ravel(), **{c: v.ravel() for c, v in r.items()}}))
        memory = law.update_memory(memory, satisfaction, active)
        pop *= 0.9
    df = pd.concat(chunks, ignore_index=True)
    df["timestamp"] = start + pd.to_timedelta(np.round(df.pop("t").to_numpy() * START_DAY_SECONDS * 1e6)
                                              .astype(np.int64), unit="us")
    return df[["user_id", "item_id", "timestamp", "like", "finish", "watch_ratio"]]


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
            return self.start + pd.Timedelta(seconds=float(day) * START_DAY_SECONDS)
        return self.start + pd.to_timedelta(np.asarray(day, np.float64) * START_DAY_SECONDS, unit="s")

    def day_of(self, timestamps) -> np.ndarray:
        """Fractional days since world start of UTC timestamps."""
        ts = pd.to_datetime(pd.Series(timestamps), utc=True)
        return ((ts - self.start).dt.total_seconds() / START_DAY_SECONDS).to_numpy()

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.law.save(d)
        with open(d / "latents.npz", "wb") as fh:
            np.savez(fh, item_ids=self.item_ids, user_ids=self.user_ids,
                     **_save_dataclass(self.items, "item_"), **_save_dataclass(self.users, "user_"))
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
        items = _load_dataclass(ItemLatents, z, "item_")
        users = _load_dataclass(UserLatents, z, "user_")
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
    created = start + pd.to_timedelta(np.round(items.created_day * START_DAY_SECONDS * 1e6).astype(np.int64),
                                      unit="us")
    items_df = pd.DataFrame({
        "item_id": world.item_ids, "created_at": created, "title": texts.title, "description": texts.description,
        "author": texts.author, "tags": texts.tags, "categories": texts.categories})
    interactions = simulate_log(cfg, law, users, start)
    queries = generate_queries(cfg, items, texts, start)
    users_df = pd.DataFrame({"user_id": world.user_ids})
    return WorldSample(world, items_df, interactions, queries, users_df, texts)
