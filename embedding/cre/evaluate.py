"""Evaluation of the collaboration-aware enhancement (CRE; SAIL §4.2-4.4), before and after.

Evaluators are named callables (sentence-transformers style) that score an `ItemSpace` (item vectors, and the
CRE heads' projections onto the teachers where there are any) and return `dict[str, float]` with prefixed keys,
a `primary_metric` and `greater_is_better`:

    key prefix              what                                                         ground truth
    seq2item_vanilla/       Recall@1/10/25: mean of <= 10 history embeddings -> all items  each user's last TRAIN
    seq2item_filtered/        (history items excluded from the results)                    positive (leave-last-out)
    i2i/                    Recall@10/50 of held-out co-engagement pairs (embedding.tasks)  behaviour
    category_i2i/           Recall@10/50 and precision@10 of items sharing the primary     content
                              category (the first entry of `categories`)
    nmi/                    NMI of k-means (k = number of primary categories) vs category  content
    teacher_<name>/         top-10 overlap and Kendall tau between the item's neighbours   behaviour (ID teacher)
                              in the student space and in the teacher's, over teacher items
    align_<name>/           bijective alignment through the CRE projection head           the teacher
    probe_<name>/           the same through a ridge linear map fitted on the teacher items (any model, so a
                              content-only model gets a number too)

Definitions:
- seq2item "vanilla" history = a seeded random <= 10 of the user's earlier train positives; "filtered" = the
  <= 10 most similar to the target under FIXED reference vectors (`filter_vectors`, e.g. the content model's
  embeddings), so the before and after models are queried with the same sequences.
- Kendall tau (scipy.stats.kendalltau, tau-b) per query, scoring candidates by student cosine and by teacher
  cosine, averaged over queries: `kendall_tau` over a fixed random set of 100 teacher items (0 = unrelated
  rankings, 1 = identical) and `kendall_tau_topk_union` over the union of the two top-k lists (focused on the
  neighbours, but negative for disjoint lists: each list's items rank high in one space and low in the other).
- Bijective alignment (SAIL §4.3): for a teacher item i, query the teacher vectors with the projected student
  vector p_i -> top-1 teacher item j -> query the projected student vectors with t_j -> top-1 item k;
  `bijective` = P(k == i), `top1` = P(j == i).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from embedding.cre.data import teacher_matrix
from embedding.cre.sequences import SequenceSet, build_sequences, seq2item_events
from embedding.evaluate import (
    RetrievalEvaluator,
    VectorEmbedder,
    evaluators_from_pairs,
    exact_search,
    normalize,
    query_frame,
)
from embedding.tasks import PairConfig, build_i2i_pairs
from recsys.data.dataset import Dataset


class CREEvalConfig(BaseModel):
    """What the CRE evaluators measure; the history settings should match the CRE training ones."""

    model_config = ConfigDict(extra="forbid")

    history_len: int = Field(10, gt=0, description="history items averaged into a seq2item query (SAIL: 10)")
    min_history: int = Field(3, gt=0, description="users with fewer usable earlier positives are skipped")
    max_lookback: int = Field(50, gt=0, description="history items are drawn from the last N earlier positives")
    seq_ks: list[int] = Field(default_factory=lambda: [1, 10, 25])
    i2i_ks: list[int] = Field(default_factory=lambda: [10, 50])
    neighbour_k: int = Field(10, gt=0, description="k of the top-k intersection / Kendall tau")
    max_queries: int = Field(500, gt=0, description="queries per evaluator (a seeded sample)")
    probe_ridge: float = Field(1e-2, gt=0, description="ridge penalty of the linear probe onto the teachers")
    pairs: PairConfig = Field(default_factory=PairConfig, description="the content stage's pair config: its i2i "
                                                                      "held-out pairs are evaluated")
    seed: int = 0


# ---- inputs -------------------------------------------------------------------------------------------------
@dataclass
class ItemSpace:
    """Item vectors to evaluate. vectors [N, D] (rows aligned with item_ids) are L2-normalised on creation;
    projected: teacher name -> [N, Dt], the student projected by the CRE head of that teacher."""

    item_ids: np.ndarray
    vectors: np.ndarray
    projected: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.item_ids = np.asarray(self.item_ids, dtype=np.int64)
        self.vectors = normalize(self.vectors)
        if len(self.vectors) != len(self.item_ids):
            raise ValueError(f"{len(self.vectors)} vectors for {len(self.item_ids)} item ids")
        for name, p in self.projected.items():
            if len(p) != len(self.item_ids):
                raise ValueError(f"projected[{name!r}] has {len(p)} rows for {len(self.item_ids)} items")
        self.projected = {k: normalize(v) for k, v in self.projected.items()}
        self._index = pd.Index(self.item_ids)

    def rows(self, ids) -> np.ndarray:
        """Row of each id, -1 where absent (and for -1 padding)."""
        return self._index.get_indexer(np.asarray(ids, dtype=np.int64).reshape(-1)).reshape(np.shape(ids))


def primary_categories(ds: Dataset) -> pd.Series:
    """item_id -> first category label (items without categories are left out)."""
    cats = ds.items.set_index("item_id")["categories"] if "categories" in ds.items.columns else pd.Series(dtype=object)
    first = cats.map(lambda v: str(v[0]) if v is not None and len(v) else None).dropna()
    return first


# ---- evaluators -----------------------------------------------------------------------------------------------
@dataclass
class Seq2ItemEvaluator:
    """Recall@k of the next item: query = normalised mean of the history items' vectors; corpus = all items;
    the query's own history items are excluded from the results."""

    name: str
    sequences: SequenceSet
    ks: tuple[int, ...] = (1, 10, 25)
    greater_is_better: bool = True

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/recall@{10 if 10 in self.ks else self.ks[0]}"

    def per_query(self, space: ItemSpace) -> tuple[list[str], dict[str, np.ndarray]]:
        """(the users queried, {"recall@k": hit of each}): users whose target or whole history has no vector
        are left out."""
        hist = space.rows(self.sequences.history)  # (S, L), -1 = padding / unknown
        tgt = space.rows(self.sequences.target)  # (S,)
        ok = (tgt >= 0) & (hist >= 0).any(1)
        hist, tgt, users = hist[ok], tgt[ok], self.sequences.user_id[ok]
        if not len(tgt):
            return [], {f"recall@{k}": np.zeros(0) for k in self.ks}
        valid = (hist >= 0)[..., None]
        q = (space.vectors[np.maximum(hist, 0)] * valid).sum(1) / valid.sum(1)  # (S, D) mean of history
        kk = max(self.ks)
        _, top = exact_search(q, space.vectors, kk + hist.shape[1])  # room for the excluded history items
        rank = np.full(len(tgt), np.inf)
        for i in range(len(tgt)):
            row = top[i][~np.isin(top[i], hist[i]) & (top[i] >= 0)][:kk]
            hit = np.flatnonzero(row == tgt[i])
            if len(hit):
                rank[i] = hit[0]
        return [str(u) for u in users], {f"recall@{k}": (rank < k).astype(np.float64) for k in self.ks}

    def query_table(self, space: ItemSpace) -> pd.DataFrame:
        users, values = self.per_query(space)
        return query_frame(self.name, users, values, self.primary_metric.split("/", 1)[1])

    def __call__(self, space: ItemSpace) -> dict[str, float]:
        users, values = self.per_query(space)
        out = {f"{self.name}/n_queries": float(len(users))}
        for metric, v in values.items():
            out[f"{self.name}/{metric}"] = float(v.mean()) if len(v) else float("nan")
        return out


@dataclass
class PairRetrievalEvaluator:
    """embedding.evaluate.RetrievalEvaluator (held-out co-engagement pairs) over an ItemSpace."""

    inner: RetrievalEvaluator
    greater_is_better: bool = True

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def primary_metric(self) -> str:
        return self.inner.primary_metric

    def _embedder(self, space: ItemSpace) -> VectorEmbedder:
        keep = space.rows(self.inner.corpus_keys)
        if (keep < 0).any():
            raise ValueError(f"{self.name}: {int((keep < 0).sum())} corpus items have no vector")
        return VectorEmbedder(space.item_ids, space.vectors)

    def query_table(self, space: ItemSpace) -> pd.DataFrame:
        return self.inner.query_table(self._embedder(space))

    def __call__(self, space: ItemSpace) -> dict[str, float]:
        return self.inner(self._embedder(space))


@dataclass
class CategoryEvaluator:
    """Content pairs: query item -> relevant = the other items with the same primary category.
    recall@k = |relevant in top k| / |relevant| (small for big categories), precision@k = share of the top k
    that share the category (the usual reading of "neighbours keep the genre")."""

    labels: pd.Series  # item_id -> label
    ks: tuple[int, ...] = (10, 50)
    max_queries: int = 500
    seed: int = 0
    name: str = "category_i2i"
    greater_is_better: bool = True

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/precision@{self.ks[0]}"

    def __call__(self, space: ItemSpace) -> dict[str, float]:
        rows = space.rows(self.labels.index.to_numpy())
        lab = self.labels.to_numpy()[rows >= 0]
        rows = rows[rows >= 0]
        lab_of_row = np.full(len(space.item_ids), None, dtype=object)
        lab_of_row[rows] = lab
        counts = pd.Series(lab).value_counts()
        cand = rows[pd.Series(lab).map(counts).to_numpy() >= 2]  # queries need another item of their category
        if not len(cand):
            return {f"{self.name}/n_queries": 0.0}
        rng = np.random.default_rng(self.seed)
        q = np.sort(rng.choice(cand, min(self.max_queries, len(cand)), replace=False))
        kk = max(self.ks)
        _, top = exact_search(space.vectors[q], space.vectors, kk + 1)
        out = {f"{self.name}/n_queries": float(len(q))}
        res = {k: ([], []) for k in self.ks}
        for i, r in enumerate(q):
            row = top[i][(top[i] != r) & (top[i] >= 0)][:kk]
            same = lab_of_row[row] == lab_of_row[r]
            n_rel = counts[lab_of_row[r]] - 1
            for k in self.ks:
                res[k][0].append(same[:k].sum() / n_rel)
                res[k][1].append(same[:k].mean() if k <= len(same) else same.sum() / k)
        for k in self.ks:
            out[f"{self.name}/recall@{k}"] = float(np.mean(res[k][0]))
        out[f"{self.name}/precision@{self.ks[0]}"] = float(np.mean(res[self.ks[0]][1]))
        return out


@dataclass
class ClusterNMIEvaluator:
    """NMI (sklearn normalized_mutual_info_score) of k-means clusters of the item vectors (k = number of
    distinct labels) against the labels (primary category)."""

    labels: pd.Series  # item_id -> label
    seed: int = 0
    name: str = "nmi"
    greater_is_better: bool = True

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/category"

    def __call__(self, space: ItemSpace) -> dict[str, float]:
        from sklearn.cluster import KMeans
        from sklearn.metrics import normalized_mutual_info_score

        rows = space.rows(self.labels.index.to_numpy())
        lab = self.labels.to_numpy()[rows >= 0]
        rows = rows[rows >= 0]
        k = len(np.unique(lab)) if len(lab) else 0
        if k < 2 or len(rows) <= k:
            return {f"{self.name}/category": float("nan"), f"{self.name}/k": float(k)}
        clusters = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit_predict(space.vectors[rows])
        return {f"{self.name}/category": float(normalized_mutual_info_score(lab, clusters)),
                f"{self.name}/k": float(k)}


def _common(space: ItemSpace, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(space rows, teacher vectors) of the teacher items that the space has, in teacher order."""
    rows = space.rows(ids)
    return rows[rows >= 0], vectors[rows >= 0]


def _sample(n: int, max_queries: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= max_queries else np.sort(np.random.default_rng(seed).choice(n, max_queries, False))


def _top_excluding_self(q_idx: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    _, top = exact_search(vectors[q_idx], vectors, k + 1)
    return np.stack([r[(r != s) & (r >= 0)][:k] for r, s in zip(top, q_idx)])


@dataclass
class NeighbourAgreementEvaluator:
    """Top-k intersection and Kendall tau between each teacher item's neighbours under the student vectors
    and under the teacher's vectors (both searched among the teacher items the space has); tau over
    `candidates` random teacher items and over the union of the two top-k lists (see the module docstring)."""

    teacher: str
    teacher_ids: np.ndarray
    teacher_vectors: np.ndarray
    k: int = 10
    max_queries: int = 500
    seed: int = 0
    candidates: int = 100
    greater_is_better: bool = True

    @property
    def name(self) -> str:
        return f"teacher_{self.teacher}"

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/top{self.k}_overlap"

    def __call__(self, space: ItemSpace) -> dict[str, float]:
        from scipy.stats import kendalltau

        rows, tvec = _common(space, self.teacher_ids, self.teacher_vectors)
        svec = space.vectors[rows]
        if len(rows) <= self.k:
            return {f"{self.name}/n_queries": float(len(rows))}
        q = _sample(len(rows), self.max_queries, self.seed)
        s_top = _top_excluding_self(q, svec, self.k)
        t_top = _top_excluding_self(q, tvec, self.k)
        rng = np.random.default_rng(self.seed)
        overlap, taus, taus_union = [], [], []
        for i, qi in enumerate(q):
            overlap.append(len(np.intersect1d(s_top[i], t_top[i])) / self.k)
            union = np.union1d(s_top[i], t_top[i])
            cand = rng.choice(len(rows), min(self.candidates, len(rows)), replace=False)
            cand = cand[cand != qi]
            for pool, out in ((cand, taus), (union, taus_union)):
                tau = kendalltau(svec[pool] @ svec[qi], tvec[pool] @ tvec[qi]).statistic
                if np.isfinite(tau):
                    out.append(tau)
        mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
        return {f"{self.name}/top{self.k}_overlap": float(np.mean(overlap)), f"{self.name}/kendall_tau": mean(taus),
                f"{self.name}/kendall_tau_topk_union": mean(taus_union), f"{self.name}/n_queries": float(len(q))}


def ridge_probe(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """W [D, Dt] minimising |x W - y|^2 + ridge * len(x) * |W|^2 (least squares, closed form)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a = x.T @ x + ridge * len(x) * np.eye(x.shape[1])
    return np.linalg.solve(a, x.T @ y).astype(np.float32)


def bijective_alignment(projected: np.ndarray, teacher: np.ndarray, queries: np.ndarray | None = None
                        ) -> dict[str, float]:
    """Rows are aligned items. query p_i -> top teacher j -> query t_j -> top projected k:
    bijective = P(k == i), top1 = P(j == i)."""
    q = np.arange(len(projected)) if queries is None else np.asarray(queries)
    _, fwd = exact_search(projected[q], teacher, 1)  # (Q, 1)
    fwd = fwd[:, 0]
    _, back = exact_search(teacher[fwd], projected, 1)
    return {"bijective": float(np.mean(back[:, 0] == q)), "top1": float(np.mean(fwd == q))}


@dataclass
class BijectiveAlignmentEvaluator:
    """Bijective alignment accuracy between the student and a teacher, through the CRE head
    (`source="head"`, prefix align_<teacher>; skipped when the space has no projection for the teacher) or a
    ridge linear probe fitted on the teacher items (`source="probe"`, prefix probe_<teacher>; in-sample)."""

    teacher: str
    teacher_ids: np.ndarray
    teacher_vectors: np.ndarray
    source: str = "head"
    max_queries: int = 500
    ridge: float = 1e-2
    seed: int = 0
    greater_is_better: bool = True

    def __post_init__(self) -> None:
        if self.source not in ("head", "probe"):
            raise ValueError(f"unknown alignment source {self.source!r}; expected 'head' or 'probe'")

    @property
    def name(self) -> str:
        return f"{'align' if self.source == 'head' else 'probe'}_{self.teacher}"

    @property
    def primary_metric(self) -> str:
        return f"{self.name}/bijective"

    def __call__(self, space: ItemSpace) -> dict[str, float]:
        rows, tvec = _common(space, self.teacher_ids, self.teacher_vectors)
        if len(rows) < 2:
            return {}
        if self.source == "head":
            if self.teacher not in space.projected:
                return {}
            proj = space.projected[self.teacher][rows]
        else:
            x = space.vectors[rows]
            proj = normalize(x @ ridge_probe(x, tvec, self.ridge))
        m = bijective_alignment(proj, tvec, _sample(len(rows), self.max_queries, self.seed))
        return {f"{self.name}/{k}": v for k, v in m.items()}


class CREEvaluator(Protocol):
    """What every evaluator above is: a named callable over an ItemSpace with a primary metric and direction."""

    @property
    def name(self) -> str: ...

    @property
    def primary_metric(self) -> str: ...

    @property
    def greater_is_better(self) -> bool: ...

    def __call__(self, space: ItemSpace) -> dict[str, float]: ...


# ---- assembly -------------------------------------------------------------------------------------------------
def build_cre_evaluators(ds: Dataset, corpus_item_ids: np.ndarray, teachers: dict[str, pd.DataFrame],
                         cfg: CREEvalConfig | None = None, filter_ids: np.ndarray | None = None,
                         filter_vectors: np.ndarray | None = None) -> list[CREEvaluator]:
    """Every CRE evaluator for `ds` (TRAIN split only) and the teachers' item tables. Filtered seq2item
    sequences need fixed reference vectors (`filter_ids`, `filter_vectors`; e.g. the content model's item
    embeddings); without them only vanilla sequences are evaluated."""
    cfg = cfg or CREEvalConfig()
    corpus_item_ids = np.asarray(corpus_item_ids, dtype=np.int64)
    history, targets = seq2item_events(ds)
    known = set(corpus_item_ids.tolist())
    events = pd.concat([history, targets], ignore_index=True)
    events = events.loc[events["item_id"].isin(known)]
    out: list[CREEvaluator] = []
    kinds = ["vanilla"] + (["filtered"] if filter_vectors is not None else [])
    for kind in kinds:
        seqs = build_sequences(events, kind, cfg.history_len, filter_ids, filter_vectors, cfg.min_history,
                               cfg.max_lookback, last_only=True, seed=cfg.seed)
        if len(seqs) > cfg.max_queries:
            keep = _sample(len(seqs), cfg.max_queries, cfg.seed)
            seqs = SequenceSet(seqs.kind, seqs.user_id[keep], seqs.history[keep], seqs.target[keep], seqs.info)
        out.append(Seq2ItemEvaluator(f"seq2item_{kind}", seqs, tuple(cfg.seq_ks)))
    ps = build_i2i_pairs(ds, cfg.pairs).restrict_items(corpus_item_ids)
    out += [PairRetrievalEvaluator(ev) for ev in
            evaluators_from_pairs({"i2i": ps}, corpus_item_ids, cfg.max_queries, cfg.seed, tuple(cfg.i2i_ks))]
    cats = primary_categories(ds)
    cats = cats.loc[cats.index.isin(known)]
    if cats.nunique() >= 2:
        out.append(CategoryEvaluator(cats, tuple(cfg.i2i_ks), cfg.max_queries, cfg.seed))
        out.append(ClusterNMIEvaluator(cats, cfg.seed))
    for name, table in sorted(teachers.items()):
        ids, vec = teacher_matrix(table, name)
        out.append(NeighbourAgreementEvaluator(name, ids, vec, cfg.neighbour_k, cfg.max_queries, cfg.seed))
        for source in ("head", "probe"):
            out.append(BijectiveAlignmentEvaluator(name, ids, vec, source, cfg.max_queries, cfg.probe_ridge,
                                                   cfg.seed))
    return out


def run_cre_evaluators(evaluators: Sequence[CREEvaluator], space: ItemSpace, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for ev in evaluators:
        out.update({f"{prefix}{k}": v for k, v in ev(space).items()})
    return out


def per_query_evaluators(evaluators: Sequence[CREEvaluator]) -> list[CREEvaluator]:
    """The evaluators that score queries one by one with the same queries whatever the model: the vanilla
    seq2item (users) and the i2i pairs; the filtered sequences depend on the reference vectors."""
    return [ev for ev in evaluators if isinstance(ev, PairRetrievalEvaluator)
            or (isinstance(ev, Seq2ItemEvaluator) and ev.sequences.kind == "vanilla")]


def cre_query_table(evaluators: Sequence[CREEvaluator], space: ItemSpace) -> pd.DataFrame:
    """The per-query table (embedding.evaluate.query_table's format) of `per_query_evaluators(evaluators)`."""
    frames = [ev.query_table(space) for ev in per_query_evaluators(evaluators)]
    return pd.concat(frames, ignore_index=True) if frames else query_frame("none", [], {}, "")


__all__ = ["CREEvalConfig", "CREEvaluator", "ItemSpace", "Seq2ItemEvaluator", "PairRetrievalEvaluator",
           "CategoryEvaluator", "ClusterNMIEvaluator", "NeighbourAgreementEvaluator", "BijectiveAlignmentEvaluator",
           "build_cre_evaluators", "cre_query_table", "per_query_evaluators",
           "run_cre_evaluators", "bijective_alignment", "ridge_probe",
           "primary_categories"]
