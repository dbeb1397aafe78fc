"""Item texts (title, description, tags, categories, OCR/ASR, author) and search queries rendered from the latents
with noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.world.config import WorldConfig
from recsys.world.latents import S_QUERIES, S_TEXT, ItemLatents, stream
from recsys.world.replay import SECONDS_PER_DAY
from recsys.world.vocabulary import NOISE_WORDS, STYLES, TOPICS

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
    rng = stream(cfg.seed, S_TEXT)
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
    rng = stream(cfg.seed, S_QUERIES)
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
    ts = start + pd.to_timedelta(np.asarray(rows_t, np.float64) * SECONDS_PER_DAY, unit="s")
    return pd.DataFrame({"query_text": rows_q, "item_id": np.asarray(rows_i, np.int64), "timestamp": ts})
