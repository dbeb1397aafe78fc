"""Retrieval evaluators (sentence-transformers style): named callables returning dict[str, float] with prefixed
keys, a `primary_metric` and `greater_is_better`.

Recall@k here is per query: |relevant in top k| / |relevant|, averaged over queries (exact inner-product search
over L2-normalised vectors with faiss; the query item itself is excluded from its own i2i results). The per-query
values (`query_table`) let two models be compared on the same queries with a paired interval (`paired_interval`).

An evaluator only scores vectors; *what* produces them is an `Embedder`:
- `ModelEmbedder` embeds items (query or target role) and texts with the trained model;
- `VectorEmbedder` looks vectors up in fixed tables, e.g. the text-only baseline
  (EncodedItems.pooled_text for items, the same text encoder's pooled tokens for query texts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import faiss
import numpy as np
import pandas as pd
from scipy.stats import bootstrap, spearmanr

from embedding.encoders.types import EncodedItems, TextTokens
from embedding.infer import embed_items, embed_texts
from embedding.model import OmniEmbeddingModel
from embedding.tasks import PairSet

RETRIEVAL_QUERIES = "retrieval_queries.parquet"
"""The per-query retrieval table a stage writes beside its model (see `query_table`)."""
BASELINE_QUERIES = "retrieval_queries_text_only.parquet"
"""The same table for the text-only baseline (the content stage's), so runs can be pooled against it."""
QUERY_COLUMNS = ["evaluator", "query", "metric", "value", "primary"]


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def exact_search(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine: (scores [Q, k], corpus row indices [Q, k]); -1 where the corpus is smaller than k."""
    corpus = np.ascontiguousarray(normalize(corpus))
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)
    return index.search(np.ascontiguousarray(normalize(queries)), min(k, len(corpus)))


class Embedder(Protocol):
    def __call__(self, kind: str, keys: Sequence, role: str, task: str) -> np.ndarray: ...


@dataclass
class RetrievalEvaluator:
    """Recall@k of held-out queries against a corpus.

    Args:
        name: key prefix, e.g. "i2i" -> "i2i/recall@10".
        query_kind / corpus_kind: "item" (keys are item ids) or "text" (keys are strings).
        query_keys: the Q queries; relevant[q]: corpus row indices relevant to query q.
        corpus_keys: the N corpus entries (all items for i2i and q2i).
        exclude_self: drop a query item from its own results (i2i).
        task: the model instruction used to embed both sides.
    """

    name: str
    query_kind: str
    query_keys: list
    corpus_kind: str
    corpus_keys: list
    relevant: list[np.ndarray]
    task: str
    ks: tuple[int, ...] = (10, 50, 100)
    exclude_self: bool = False
    greater_is_better: bool = True
    info: dict = field(default_factory=dict)

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/recall@{self.ks[0]}"

    def per_query(self, query_emb: np.ndarray, corpus_emb: np.ndarray) -> dict[str, np.ndarray]:
        """Recall@k of each query ({"recall@10": [Q], ...}) from precomputed vectors: query_emb [Q, D] aligned
        with query_keys, corpus_emb [N, D]."""
        if len(query_emb) != len(self.query_keys) or len(corpus_emb) != len(self.corpus_keys):
            raise ValueError(f"{self.name}: got {len(query_emb)} query / {len(corpus_emb)} corpus vectors for "
                             f"{len(self.query_keys)} queries / {len(self.corpus_keys)} corpus entries")
        kmax = max(self.ks) + int(self.exclude_self)
        _, top = exact_search(query_emb, corpus_emb, kmax)  # (Q, kmax)
        if self.exclude_self:
            pos = {k: i for i, k in enumerate(self.corpus_keys)}
            self_row = np.array([pos.get(k, -2) for k in self.query_keys])
            kk = min(max(self.ks), len(self.corpus_keys))
            top = np.stack([np.pad(r[r != s][:kk], (0, kk - len(r[r != s][:kk])), constant_values=-1)
                            for r, s in zip(top, self_row)])
        return {f"recall@{k}": np.array([len(np.intersect1d(top[i, :k], rel)) / len(rel)
                                         for i, rel in enumerate(self.relevant)], dtype=np.float64)
                for k in self.ks}

    def score(self, query_emb: np.ndarray, corpus_emb: np.ndarray) -> dict[str, float]:
        """The per-query recalls averaged: {"<name>/recall@k": mean, "<name>/n_queries": Q}."""
        out = {f"{self.name}/{m}": float(v.mean()) if len(v) else float("nan")
               for m, v in self.per_query(query_emb, corpus_emb).items()}
        out[f"{self.name}/n_queries"] = float(len(self.query_keys))
        return out

    def query_table(self, embedder: Embedder) -> pd.DataFrame:
        """One row per (query, metric): evaluator, query (its key as text), metric, value, primary."""
        q = embedder(self.query_kind, self.query_keys, "query", self.task)
        c = embedder(self.corpus_kind, self.corpus_keys, "target", self.task)
        return query_frame(self.name, [str(k) for k in self.query_keys], self.per_query(q, c),
                           self.primary_metric.split("/", 1)[1])

    def __call__(self, embedder: Embedder) -> dict[str, float]:
        q = embedder(self.query_kind, self.query_keys, "query", self.task)
        c = embedder(self.corpus_kind, self.corpus_keys, "target", self.task)
        return self.score(q, c)


def evaluators_from_pairs(pair_sets: dict[str, PairSet], corpus_item_ids: np.ndarray, max_queries: int = 1000,
                          seed: int = 0, ks: tuple[int, ...] = (10, 50, 100)) -> list[RetrievalEvaluator]:
    """One evaluator per pair set with held-out pairs whose target side is items (i2i, q2i); corpus = all
    items. Label pair sets get an item -> label-text evaluator over all label texts (recall@1/5)."""
    corpus_item_ids = np.asarray(corpus_item_ids)
    item_row = {int(i): n for n, i in enumerate(corpus_item_ids)}
    out = []
    rng = np.random.default_rng(seed)
    for name, ps in sorted(pair_sets.items()):
        if ps.graded:  # no relevant set: GradedEvaluator
            continue
        rel = ps.holdout_relevant()
        if ps.target_kind == "item":
            corpus_keys, corpus_kind, row_of, eks = list(corpus_item_ids), "item", item_row, ks
        else:
            labels = sorted(set(ps.train["target"]) | set(ps.holdout["target"]))
            corpus_keys, corpus_kind, row_of, eks = labels, "text", {t: i for i, t in enumerate(labels)}, (1, 5)
        keys = [q for q in sorted(rel) if ps.query_kind == "text" or int(q) in item_row]
        if len(keys) > max_queries:
            keys = [keys[i] for i in np.sort(rng.choice(len(keys), max_queries, replace=False))]
        relevant, qkeys = [], []
        for q in keys:
            r = np.array(sorted(row_of[t] for t in rel[q] if t in row_of), dtype=np.int64)
            if len(r):
                qkeys.append(q)
                relevant.append(r)
        if qkeys:
            out.append(RetrievalEvaluator(name, ps.query_kind, qkeys, corpus_kind, corpus_keys, relevant,
                                          task=ps.task, ks=eks, exclude_self=ps.query_kind == corpus_kind == "item"))
    return out


@dataclass
class GradedEvaluator:
    """Spearman correlation between the cosine of held-out graded pairs and their scores (embedding.tasks
    build_graded_pairs): does the model order pairs as the users' agreement does?"""

    name: str
    pairs: pd.DataFrame  # query, target (item ids), score
    task: str = "i2i"
    greater_is_better: bool = True

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/spearman"

    def __call__(self, embedder: Embedder) -> dict[str, float]:
        q = normalize(embedder("item", self.pairs["query"].tolist(), "query", self.task))
        t = normalize(embedder("item", self.pairs["target"].tolist(), "target", self.task))
        rho = spearmanr((q * t).sum(1), self.pairs["score"].to_numpy()).statistic if len(q) > 2 else float("nan")
        return {f"{self.name}/spearman": float(rho), f"{self.name}/n_pairs": float(len(q))}


def graded_evaluators(pair_sets: dict[str, PairSet], corpus_item_ids: np.ndarray, max_pairs: int = 2000,
                      seed: int = 0) -> list[GradedEvaluator]:
    """One GradedEvaluator per graded pair set with held-out pairs (a seeded sample of at most `max_pairs`)."""
    known = set(np.asarray(corpus_item_ids).tolist())
    out = []
    for name, ps in sorted(pair_sets.items()):
        pairs = ps.holdout.loc[ps.holdout["query"].isin(known) & ps.holdout["target"].isin(known)] \
            if ps.graded else ps.holdout.iloc[:0]
        if len(pairs) > max_pairs:
            pairs = pairs.iloc[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
        if len(pairs) > 2:
            out.append(GradedEvaluator(name, pairs.reset_index(drop=True), ps.task))
    return out


def run_evaluators(evaluators: Sequence[RetrievalEvaluator], embedder: Embedder, prefix: str = ""
                   ) -> dict[str, float]:
    out: dict[str, float] = {}
    for ev in evaluators:
        out.update({f"{prefix}{k}": v for k, v in ev(embedder).items()})
    return out


def query_frame(evaluator: str, queries: list[str], values: dict[str, np.ndarray], primary: str) -> pd.DataFrame:
    """The long per-query table of one evaluator (`query_table`'s format)."""
    return pd.DataFrame([(evaluator, q, m, float(v[i]), m == primary) for m, v in values.items()
                         for i, q in enumerate(queries)], columns=QUERY_COLUMNS)


def summarize(frame: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """`run_evaluators`' metrics from a per-query table: means per (evaluator, metric) and n_queries."""
    out: dict[str, float] = {}
    for ev, g in frame.groupby("evaluator", sort=True):
        for metric, v in g.groupby("metric", sort=False)["value"]:
            out[f"{prefix}{ev}/{metric}"] = float(v.mean())
        out[f"{prefix}{ev}/n_queries"] = float(g["query"].nunique())
    return out


def paired_interval(after: np.ndarray, before: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                    alpha: float = 0.05) -> tuple[float, float, float]:
    """mean(after - before) over the same queries and its percentile bootstrap interval over queries."""
    d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    if len(d) < 2 or np.all(d == d[0]):
        m = float(d.mean()) if len(d) else float("nan")
        return m, m, m
    ci = bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=1 - alpha, method="percentile",
                   random_state=np.random.default_rng(seed)).confidence_interval
    return float(d.mean()), float(ci.low), float(ci.high)


def compare_query_tables(after: pd.DataFrame, before: pd.DataFrame, prefix: str, primary_only: bool = False,
                         n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Paired differences (after - before) of every metric both tables report on the same queries:
    {"<prefix><evaluator>/<metric>": diff, ..._lo, ..._hi, ..._n}."""
    keys = ["evaluator", "query", "metric"]
    both = after.merge(before, on=keys, suffixes=("_after", "_before"))
    if primary_only:
        both = both.loc[both["primary_after"]]
    out: dict[str, float] = {}
    for (ev, metric), g in both.groupby(["evaluator", "metric"], sort=True):
        d, lo, hi = paired_interval(g["value_after"].to_numpy(), g["value_before"].to_numpy(), n_resamples, seed)
        key = f"{prefix}{ev}/{metric}"
        out.update({key: d, f"{key}_lo": lo, f"{key}_hi": hi, f"{key}_n": float(len(g))})
    return out


class ModelEmbedder:
    """Embeds with the model. Item embeddings of the whole corpus are computed once per (role, task)."""

    def __init__(self, model: OmniEmbeddingModel, encoded: EncodedItems, texts: TextTokens | None = None,
                 text_index: dict[str, int] | None = None, batch_size: int = 256, device: str = "auto",
                 dim: int | None = None) -> None:
        self.model, self.encoded, self.texts, self.text_index = model, encoded, texts, text_index or {}
        self.batch_size, self.device, self.dim = batch_size, device, dim
        self._items: dict[tuple[str, str], np.ndarray] = {}
        self._row = {int(i): n for n, i in enumerate(encoded.item_ids)}

    def __call__(self, kind: str, keys: Sequence, role: str, task: str) -> np.ndarray:
        if kind == "item":
            rows = np.array([self._row[int(k)] for k in keys], dtype=np.int64)
            if (role, task) in self._items:
                return self._items[role, task][rows]
            if len(rows) < len(self.encoded) // 2:  # a few queries: embed just those
                return embed_items(self.model, self.encoded, self.batch_size, self.device, role=role, task=task,
                                   dim=self.dim, rows=rows)
            self._items[role, task] = embed_items(self.model, self.encoded, self.batch_size, self.device,
                                                  role=role, task=task, dim=self.dim)
            return self._items[role, task][rows]
        if self.texts is None:
            raise ValueError("ModelEmbedder has no text tokens to embed texts with")
        rows = np.array([self.text_index[k] for k in keys], dtype=np.int64)
        return embed_texts(self.model, self.texts.take(rows), self.batch_size, self.device, role=role, task=task,
                           dim=self.dim)


class VectorEmbedder:
    """Looks vectors up: items by id in `item_vectors` (rows aligned with item_ids), texts in `text_vectors`.
    The text-only baseline: VectorEmbedder(encoded.item_ids, encoded.pooled_text, pooled query vectors)."""

    def __init__(self, item_ids: np.ndarray, item_vectors: np.ndarray,
                 text_vectors: dict[str, np.ndarray] | None = None) -> None:
        self._row = {int(i): n for n, i in enumerate(item_ids)}
        self.item_vectors, self.text_vectors = np.asarray(item_vectors, dtype=np.float32), text_vectors or {}

    def __call__(self, kind: str, keys: Sequence, role: str, task: str) -> np.ndarray:
        if kind == "item":
            return self.item_vectors[[self._row[int(k)] for k in keys]]
        return np.stack([self.text_vectors[k] for k in keys]).astype(np.float32)
