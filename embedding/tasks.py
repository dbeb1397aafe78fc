"""Contrastive pair builders (SAIL §3.1.1 / §3.3.4) and the one-dataset-per-batch sampler (§3.3.3).

Every builder reads only the TRAIN split of interactions (`ds.split.train`) and, for content-derived pairs,
only items created before the train cut-off (`items_before_train_end`); nothing here can see valid/test
interactions. Each returns a `PairSet`: train pairs plus held-out pairs for evaluation, split by anchor so
that no held-out pair is ever trained on.

    name     task      query side    target side   source
    i2i      i2i       item          item          consecutive positives of a user within a window
    graded   i2i       item          item          co-engaged items, graded by the users' agreement (CoSENT)
    q2i      q2i       text          item          ds.queries, or genre+title-keyword / tag queries from items
    label    label     item          text          item -> "category: Comedy" / "tag: pixar"

(CRE's seq2item examples, earlier positives -> next positive, are built in embedding.cre.sequences.)

Hold-out rule (by anchor): i2i holds out a fraction of *items*; every pair touching one of them is held out
(so held-out items appear in no i2i training pair: a cold-item test). q2i holds out a fraction of distinct
query texts; label holds out a fraction of items.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.data.dataset import Dataset

log = logging.getLogger(__name__)

SideKind = Literal["item", "text"]
_WORD = re.compile(r"[a-z][a-z']+")
_YEAR = re.compile(r"\(\d{4}\)\s*$")
_STOPWORDS = frozenset(
    "the a an and of in on at to for with from by is it its this that as or be are was were his her their our "
    "your my me we you they them he she not no all into out over under about after before what when who how "
    "les las los der die das und von".split())


class PairConfig(BaseModel):
    """How contrastive pairs are built from a dataset (all from the train split)."""

    model_config = ConfigDict(extra="forbid")

    i2i_window: int = Field(3, gt=0, description="pair a positive with the user's next `window` positives")
    i2i_max_gap_hours: float = Field(24.0, gt=0, description="... if they are at most this far apart in time")
    i2i_max_pairs_per_item: int = Field(50, gt=0, description="keep the strongest pairs (most co-engaging "
                                                              "users) up to this many per item")
    q2i: Literal["auto", "queries", "items", "off"] = Field(
        "auto", description="auto: ds.queries when present, else queries built from item fields")
    q2i_max_items_per_query: int = Field(20, gt=0, description="skip more generic queries")
    q2i_max_queries: int = Field(5000, gt=0)
    label_fields: list[Literal["categories", "tags"]] = Field(default_factory=lambda: ["categories", "tags"])
    label_templates: dict[str, str] = Field(
        default_factory=lambda: {"categories": "category: {label}", "tags": "tag: {label}"})
    label_min_items: int = Field(5, gt=0, description="labels on fewer train items are skipped")
    graded_min_users: int = Field(2, gt=0, description="graded pairs need this many users who engaged both items")
    graded_max_pairs: int = Field(20000, gt=0, description="keep the pairs with the most co-engaging users")
    holdout_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of anchors held out for evaluation")
    items_before_train_end: bool = Field(True, description="content pairs only from items created before "
                                                           "the train cut-off")
    seed: int = 0


@dataclass
class PairSet:
    """Pairs of one dataset/task. `train` and `holdout` have columns query, target (item ids or texts)."""

    name: str  # dataset key: sampling weight, temperature
    task: str  # instruction task of the model
    query_kind: SideKind
    target_kind: SideKind
    train: pd.DataFrame
    holdout: pd.DataFrame
    symmetric: bool = False  # both sides are the same kind and either may be the query
    info: dict = field(default_factory=dict)
    graded: bool = False  # a "score" column grades each pair (CoSENT), instead of every pair being a positive

    def __len__(self) -> int:
        return len(self.train)

    def texts(self) -> list[str]:
        """All texts on either side (train and held out), to be encoded once."""
        out: set[str] = set()
        for kind, col in ((self.query_kind, "query"), (self.target_kind, "target")):
            if kind == "text":
                out.update(self.train[col].tolist())
                out.update(self.holdout[col].tolist())
        return sorted(out)

    def restrict_items(self, item_ids: np.ndarray) -> PairSet:
        """Drop pairs whose item sides are not among `item_ids` (e.g. items without encoder output)."""
        keep_ids = set(np.asarray(item_ids).tolist())

        def ok(df: pd.DataFrame) -> pd.Series:
            m = pd.Series(True, index=df.index)
            for kind, col in ((self.query_kind, "query"), (self.target_kind, "target")):
                if kind == "item":
                    m &= df[col].isin(keep_ids)
            return m

        train, holdout = self.train[ok(self.train)], self.holdout[ok(self.holdout)]
        dropped = len(self.train) - len(train) + len(self.holdout) - len(holdout)
        if dropped:
            log.warning("%s: dropped %d pairs whose items are not encoded", self.name, dropped)
        return PairSet(self.name, self.task, self.query_kind, self.target_kind, train.reset_index(drop=True),
                       holdout.reset_index(drop=True), self.symmetric, self.info, self.graded)

    def holdout_relevant(self) -> dict:
        """Held-out query -> set of relevant targets."""
        return {q: set(g) for q, g in self.holdout.groupby("query", sort=True)["target"]}


def _holdout_keys(keys: np.ndarray, fraction: float, seed: int) -> set:
    keys = np.sort(np.unique(keys))
    n = int(round(len(keys) * fraction))
    if fraction > 0 and len(keys) >= 2:
        n = max(n, 1)
    rng = np.random.default_rng(seed)
    return set(keys[rng.permutation(len(keys))[:n]].tolist())


def _train_items(ds: Dataset, cfg: PairConfig) -> pd.DataFrame:
    items = ds.items
    if cfg.items_before_train_end:
        items = items.loc[items["created_at"] < ds.split.train_end]
    return items


# ---- i2i ------------------------------------------------------------------------------------------------
def build_i2i_pairs(ds: Dataset, cfg: PairConfig | None = None) -> PairSet:
    """Co-engagement pairs: each positive of a user with the user's next `i2i_window` positives (train split
    only) that are at most `i2i_max_gap_hours` later; unordered, deduplicated, counted, capped per item."""
    cfg = cfg or PairConfig()
    train = ds.split.train(ds.interactions)
    pos = train.loc[ds.is_positive(train), ["user_id", "item_id", "timestamp"]]
    pos = pos.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    u = pos["user_id"].to_numpy()
    it = pos["item_id"].to_numpy()
    ts = ((pos["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).to_numpy(np.int64)
    max_gap = int(cfg.i2i_max_gap_hours * 3600e6)
    a_parts, b_parts = [], []
    for k in range(1, cfg.i2i_window + 1):
        if len(it) <= k:
            break
        m = (u[k:] == u[:-k]) & (ts[k:] - ts[:-k] <= max_gap) & (it[k:] != it[:-k])
        a, b = it[:-k][m], it[k:][m]
        a_parts.append(np.minimum(a, b))
        b_parts.append(np.maximum(a, b))
    pairs = pd.DataFrame({"a": np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64),
                          "b": np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)})
    pairs = pairs.groupby(["a", "b"]).size().rename("count").reset_index()
    n_raw = len(pairs)
    # cap per item: strongest pairs first (ties by ids, deterministic)
    pairs = pairs.sort_values(["count", "a", "b"], ascending=[False, True, True], kind="stable")
    pairs = pairs.reset_index(drop=True)
    ends = pd.DataFrame({"item": np.concatenate([pairs["a"], pairs["b"]]),
                         "pair": np.concatenate([pairs.index, pairs.index])})
    ends["rank"] = ends.groupby("item").cumcount()  # rank of the pair among the item's pairs, strongest first
    worst = ends.groupby("pair")["rank"].max()
    pairs = pairs.loc[worst.loc[pairs.index].to_numpy() < cfg.i2i_max_pairs_per_item]
    # hold out by anchor item: every pair touching a held-out item
    held = _holdout_keys(np.concatenate([pairs["a"].to_numpy(), pairs["b"].to_numpy()]), cfg.holdout_fraction,
                         cfg.seed)
    in_a, in_b = pairs["a"].isin(held), pairs["b"].isin(held)
    train_pairs = pairs.loc[~in_a & ~in_b].rename(columns={"a": "query", "b": "target"})
    holdout = pd.concat([
        pairs.loc[in_a, ["a", "b", "count"]].rename(columns={"a": "query", "b": "target"}),
        pairs.loc[in_b, ["b", "a", "count"]].rename(columns={"b": "query", "a": "target"}),
    ]).sort_values(["query", "target"], kind="stable")
    info = {"raw_pairs": n_raw, "train_pairs": len(train_pairs), "holdout_pairs": len(holdout),
            "holdout_items": len(held), "positives": len(pos)}
    log.info("i2i pairs: %s", info)
    return PairSet("i2i", "i2i", "item", "item", train_pairs.reset_index(drop=True),
                   holdout.reset_index(drop=True), symmetric=True, info=info)


# ---- q2i ------------------------------------------------------------------------------------------------
def title_keywords(title: str | None) -> list[str]:
    """Content words of a title (year and stopwords removed), in order, deduplicated."""
    if not title:
        return []
    words = _WORD.findall(_YEAR.sub("", title).lower())
    return list(dict.fromkeys(w for w in words if len(w) >= 4 and w not in _STOPWORDS))


def _item_queries(items: pd.DataFrame, cfg: PairConfig) -> pd.DataFrame:
    """Queries made from item fields (no queries table, e.g. MovieLens): '<genre> <title keyword>' for one
    random genre/keyword of each item, and each tag; relevant = every item matching the query exactly."""
    rng = np.random.default_rng(cfg.seed)
    ids = items["item_id"].to_numpy()
    kw = [set(title_keywords(t)) for t in items["title"]]
    cats = [[c.lower() for c in v] for v in items["categories"]]
    tags = [[t.lower() for t in v] for v in items["tags"]]
    by_cat: dict[str, set[int]] = {}
    by_kw: dict[str, set[int]] = {}
    by_tag: dict[str, set[int]] = {}
    for i, (k, c, t) in enumerate(zip(kw, cats, tags)):
        for x in c:
            by_cat.setdefault(x, set()).add(i)
        for x in k:
            by_kw.setdefault(x, set()).add(i)
        for x in t:
            by_tag.setdefault(x, set()).add(i)
    queries: dict[str, set[int]] = {}
    for k, c in zip(kw, cats):
        if k and c:
            g = c[rng.integers(len(c))]
            w = sorted(k)[rng.integers(len(k))]
            queries.setdefault(f"{g} {w}", by_cat[g] & by_kw[w])
    for t, rows in by_tag.items():
        queries.setdefault(t, rows)
    rows = [(q, int(ids[r])) for q, rel in queries.items() if len(rel) <= cfg.q2i_max_items_per_query
            for r in sorted(rel)]
    return pd.DataFrame(rows, columns=["query", "target"])


def build_q2i_pairs(ds: Dataset, cfg: PairConfig | None = None) -> PairSet | None:
    """Query -> item pairs from ds.queries (train period when timestamped) or built from item fields."""
    cfg = cfg or PairConfig()
    source = cfg.q2i
    if source == "off":
        return None
    if source == "auto":
        source = "queries" if ds.queries is not None and len(ds.queries) else "items"
    items = _train_items(ds, cfg)
    if source == "queries":
        if ds.queries is None:
            raise ValueError("pairs.q2i='queries' but the dataset has no queries table")
        q = ds.queries
        if "timestamp" in q.columns:
            q = ds.split.train(q)
        q = q.loc[q["item_id"].isin(items["item_id"])]
        df = (q.assign(query=q["query_text"].astype(str).str.strip())
              .rename(columns={"item_id": "target"})[["query", "target"]].drop_duplicates())
        size = df.groupby("query")["target"].transform("size")
        df = df.loc[size <= cfg.q2i_max_items_per_query]
    else:
        df = _item_queries(items, cfg)
    if df.empty:
        log.warning("q2i: no queries could be built (source=%s)", source)
        return None
    uniq = np.sort(df["query"].unique())
    if len(uniq) > cfg.q2i_max_queries:
        keep = set(uniq[np.random.default_rng(cfg.seed).permutation(len(uniq))[:cfg.q2i_max_queries]])
        df = df.loc[df["query"].isin(keep)]
    df = df.sort_values(["query", "target"], kind="stable")
    held = _holdout_keys(df["query"].to_numpy(), cfg.holdout_fraction, cfg.seed + 1)
    is_held = df["query"].isin(held)
    info = {"source": source, "queries": int(df["query"].nunique()), "train_pairs": int((~is_held).sum()),
            "holdout_pairs": int(is_held.sum()), "holdout_queries": len(held)}
    log.info("q2i pairs: %s", info)
    return PairSet("q2i", "q2i", "text", "item", df.loc[~is_held].reset_index(drop=True),
                   df.loc[is_held].reset_index(drop=True), info=info)


# ---- item -> label text ---------------------------------------------------------------------------------
def build_label_pairs(ds: Dataset, cfg: PairConfig | None = None) -> PairSet | None:
    """Classification as retrieval: item -> "category: Comedy" / "tag: pixar" for labels on enough items."""
    cfg = cfg or PairConfig()
    items = _train_items(ds, cfg)
    rows = []
    for col in cfg.label_fields:
        template = cfg.label_templates.get(col, f"{col}: {{label}}")
        for item_id, labels in zip(items["item_id"], items[col]):
            for lab in dict.fromkeys(str(x).strip() for x in labels):
                if lab:
                    rows.append((int(item_id), template.format(label=lab)))
    df = pd.DataFrame(rows, columns=["query", "target"]).drop_duplicates()
    if df.empty:
        return None
    df = df.loc[df.groupby("target")["query"].transform("size") >= cfg.label_min_items]
    if df.empty:
        return None
    df = df.sort_values(["query", "target"], kind="stable")
    held = _holdout_keys(df["query"].to_numpy(), cfg.holdout_fraction, cfg.seed + 2)
    is_held = df["query"].isin(held)
    info = {"labels": int(df["target"].nunique()), "train_pairs": int((~is_held).sum()),
            "holdout_pairs": int(is_held.sum())}
    log.info("label pairs: %s", info)
    return PairSet("label", "label", "item", "text", df.loc[~is_held].reset_index(drop=True),
                   df.loc[is_held].reset_index(drop=True), info=info)


def build_graded_pairs(ds: Dataset, cfg: PairConfig | None = None) -> PairSet | None:
    """Item pairs graded by how alike the users who engaged both scored them: over every user with both items
    within `i2i_window` interactions of each other (train split, positive or not), the mean of
    1 - |v_a - v_b| / span of the positive rule's column (a rating, a watch fraction; span over the train split).
    A graded similarity for CoSENT: co-rated alike -> near 1, one loved and one disliked -> near 0. None when the
    column takes one value (nothing to grade)."""
    cfg = cfg or PairConfig()
    train = ds.split.train(ds.interactions)
    col = ds.positive.column
    values = train[col].astype(np.float64)
    span = float(values.max() - values.min()) if len(values) else 0.0
    if not span > 0:
        return None
    df = train.assign(v=values).sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    u, it, v = df["user_id"].to_numpy(), df["item_id"].to_numpy(), df["v"].to_numpy()
    parts = []
    for k in range(1, cfg.i2i_window + 1):
        if len(it) <= k:
            break
        m = (u[k:] == u[:-k]) & (it[k:] != it[:-k])
        a, b = it[:-k][m], it[k:][m]
        parts.append(pd.DataFrame({"user": u[k:][m], "a": np.minimum(a, b), "b": np.maximum(a, b),
                                   "agree": 1.0 - np.abs(v[k:][m] - v[:-k][m]) / span}))
    if not parts:
        return None
    pairs = pd.concat(parts).drop_duplicates(["user", "a", "b"])
    pairs = pairs.groupby(["a", "b"]).agg(score=("agree", "mean"), users=("user", "size")).reset_index()
    pairs = pairs.loc[pairs["users"] >= cfg.graded_min_users]
    pairs = pairs.sort_values(["users", "a", "b"], ascending=[False, True, True], kind="stable")
    pairs = pairs.head(cfg.graded_max_pairs).reset_index(drop=True)
    if len(pairs) < 2:
        return None
    held = _holdout_keys(np.concatenate([pairs["a"].to_numpy(), pairs["b"].to_numpy()]), cfg.holdout_fraction,
                         cfg.seed)
    out = pairs.rename(columns={"a": "query", "b": "target"})
    touch = out["query"].isin(held) | out["target"].isin(held)
    info = {"pairs": len(out), "holdout_pairs": int(touch.sum()), "column": col, "span": span,
            "mean_score": float(out["score"].mean())}
    log.info("graded pairs: %s", info)
    return PairSet("graded", "i2i", "item", "item", out.loc[~touch].reset_index(drop=True),
                   out.loc[touch].reset_index(drop=True), symmetric=True, info=info, graded=True)


BUILDERS = {"i2i": build_i2i_pairs, "q2i": build_q2i_pairs, "label": build_label_pairs, "graded": build_graded_pairs}


def build_validation_pairs(ds: Dataset, history: int = 10, recent_fraction: float = 0.2) -> dict[str, PairSet]:
    """Validation sets that resemble what the ranker's match features ask of the embedding (adaptive data
    balancing, embedding.balancing), from the TRAIN split only; item -> item pairs with the i2i instruction:

        history_to_last     each of a user's <= `history` earlier positives -> the user's last positive
        recent_consecutive  consecutive positives of a user in the last `recent_fraction` of the train period

    Pairs only, no hold-out (they are never trained on)."""
    train = ds.split.train(ds.interactions)
    pos = train.loc[ds.is_positive(train), ["user_id", "item_id", "timestamp"]]
    pos = pos.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    last = pos.groupby("user_id").tail(history + 1)
    rank_from_end = last.groupby("user_id").cumcount(ascending=False)
    target = last.loc[rank_from_end == 0].set_index("user_id")["item_id"]
    earlier = last.loc[rank_from_end > 0]
    h2l = pd.DataFrame({"query": earlier["item_id"].to_numpy(),
                        "target": target.loc[earlier["user_id"]].to_numpy()})
    start = ds.split.train_end - (ds.split.train_end - pos["timestamp"].min()) * recent_fraction if len(pos) \
        else ds.split.train_end
    recent = pos.loc[pos["timestamp"] >= start]
    same_user = recent["user_id"].to_numpy()[1:] == recent["user_id"].to_numpy()[:-1]
    items = recent["item_id"].to_numpy()
    cons = pd.DataFrame({"query": items[:-1][same_user], "target": items[1:][same_user]}) if len(items) \
        else pd.DataFrame({"query": [], "target": []})
    empty = pd.DataFrame({"query": [], "target": []})
    out = {}
    for name, pairs in (("history_to_last", h2l), ("recent_consecutive", cons)):
        pairs = pairs.loc[pairs["query"] != pairs["target"]].drop_duplicates().reset_index(drop=True)
        if len(pairs):
            out[name] = PairSet(name, "i2i", "item", "item", pairs, empty, symmetric=True,
                                info={"pairs": len(pairs)})
    return out


def build_pair_sets(ds: Dataset, cfg: PairConfig | None = None, tasks: list[str] | None = None
                    ) -> dict[str, PairSet]:
    """All pair sets that could be built (empty ones are skipped), keyed by name."""
    cfg = cfg or PairConfig()
    out = {}
    for name in tasks or list(BUILDERS):
        if name not in BUILDERS:
            raise ValueError(f"unknown pair task {name!r}; known: {sorted(BUILDERS)}")
        ps = BUILDERS[name](ds, cfg)
        if ps is not None and len(ps.train):
            out[name] = ps
    return out


# ---- sampling: one dataset per batch ----------------------------------------------------------------------
SamplingStrategy = Literal["proportional", "sqrt", "uniform"]
"""How datasets are weighted when a stage gives no explicit weights.
proportional: by number of train pairs (every pair equally likely; big sets dominate);
uniform: every dataset equally often (small sets are revisited many times);
sqrt (default): by sqrt(size), the usual compromise between the two."""


def dataset_weights(sizes: dict[str, int], strategy: SamplingStrategy = "sqrt",
                    explicit: dict[str, float] | None = None) -> dict[str, float]:
    """Normalised sampling probabilities over the datasets in `sizes`."""
    if explicit:
        unknown = set(explicit) - set(sizes)
        if unknown:
            raise ValueError(f"weights given for unknown/empty datasets {sorted(unknown)}; have {sorted(sizes)}")
        w = {k: float(v) for k, v in explicit.items() if v > 0}
    elif strategy == "proportional":
        w = {k: float(n) for k, n in sizes.items()}
    elif strategy == "sqrt":
        w = {k: float(np.sqrt(n)) for k, n in sizes.items()}
    elif strategy == "uniform":
        w = {k: 1.0 for k in sizes}
    else:
        raise ValueError(f"unknown sampling strategy {strategy!r}")
    total = sum(w.values())
    if total <= 0:
        raise ValueError(f"no dataset has a positive weight: {w}")
    return {k: v / total for k, v in sorted(w.items())}
