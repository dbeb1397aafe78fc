"""What the progressive content recipe (SAIL §3.3.1) computes between stages, from the model as it is then:

    balanced_stage_weights  the dataset sampling weights of adaptive data balancing (embedding.balancing)
    mine_pair_set           one dataset's hard negatives (embedding.hard_negatives) in the trainer's row space

Both only read training pairs (and validation pairs built from the training period); held-out pairs and their
items are never scored, so a held-out item still appears in no training batch, not even as a negative.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from embedding.balancing import BalanceConfig, balance_weights
from embedding.evaluate import Embedder, normalize
from embedding.hard_negatives import MinedNegatives, mine_hard_negatives
from embedding.tasks import PairSet

log = logging.getLogger(__name__)


class MiningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool: int = Field(50, gt=0, description="nearest training targets searched per query")
    threshold_queries: int = Field(500, gt=0, description="queries scored against every target to choose lambda*")
    seed: int = 0


@dataclass
class RecipeState:
    """What the stages computed at their start, saved in the checkpoint so that a resumed run trains on the same
    weights and negatives: the balanced weights (once), and the current stage's hard negatives per dataset."""

    balance_weights: dict[str, float] | None = None
    balance_table: dict[str, list] | None = None
    mined: dict[str, np.ndarray] = field(default_factory=dict)  # dataset -> [query rows, k] target rows
    mined_stage: int = -1
    mining: dict[str, dict] = field(default_factory=dict)  # stage name -> dataset -> lambda*, counts, curve

    def state_dict(self) -> dict:
        return {"balance_weights": self.balance_weights, "balance_table": self.balance_table,
                "mined": {k: torch.from_numpy(v) for k, v in self.mined.items()}, "mined_stage": self.mined_stage,
                "mining": self.mining}

    def load_state_dict(self, state: dict) -> None:
        self.balance_weights, self.balance_table = state["balance_weights"], state["balance_table"]
        self.mined = {k: v.numpy() for k, v in state["mined"].items()}
        self.mined_stage, self.mining = state["mined_stage"], state["mining"]

    def metrics(self) -> dict[str, float]:
        """Flat numbers to log: balance/<dataset>, mining/<stage>/<dataset>/<lambda|f1|dropped|found|k>."""
        out = {f"balance/{k}": w for k, w in (self.balance_weights or {}).items()}
        for stage, per in self.mining.items():
            for name, info in per.items():
                if "skipped" in info:
                    continue
                out.update({f"mining/{stage}/{name}/{key}": float(info[key])
                            for key in ("lambda", "f1", "dropped", "found", "k")})
        return out


def plain_columns(frame: pd.DataFrame) -> dict[str, list]:
    """A frame as {column: list of Python scalars}: what a weights_only checkpoint and JSON both hold."""
    return {str(c): [v.item() if hasattr(v, "item") else v for v in frame[c].tolist()] for c in frame.columns}


def pair_vectors(embedder: Embedder, ps: PairSet, pairs: pd.DataFrame) -> np.ndarray:
    """One vector per pair: normalize(normalize(query) + normalize(target)), each side embedded in its role."""
    q = normalize(embedder(ps.query_kind, pairs["query"].tolist(), "query", ps.task))
    t = normalize(embedder(ps.target_kind, pairs["target"].tolist(), "target", ps.task))
    return normalize(q + t)


def _sample(pairs: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(pairs) <= n:
        return pairs
    return pairs.iloc[np.sort(np.random.default_rng(seed).choice(len(pairs), n, replace=False))]


def balanced_stage_weights(embedder: Embedder, train_sets: dict[str, PairSet], valid_sets: dict[str, PairSet],
                           cfg: BalanceConfig) -> tuple[dict[str, float], pd.DataFrame]:
    """Sampling weights of the training sets by their transport score against the validation sets."""
    train = {k: pair_vectors(embedder, ps, _sample(ps.train, cfg.samples, cfg.seed)) for k, ps in train_sets.items()}
    valid = {k: pair_vectors(embedder, ps, _sample(ps.train, cfg.samples, cfg.seed)) for k, ps in valid_sets.items()}
    weights, table = balance_weights(train, valid, cfg)
    log.info("adaptive data balancing: weights %s", {k: round(w, 4) for k, w in weights.items()})
    return weights, table


def mine_pair_set(embedder: Embedder, ps: PairSet, k: int, query_row: dict, target_row: dict,
                  cfg: MiningConfig) -> tuple[np.ndarray, MinedNegatives] | str:
    """Hard negatives of every training query of `ps`: (table [len(query_row), k] of target rows, -1 where
    none; the mining result), or why there are none (a WARNING too). `query_row` / `target_row` map a key (item
    id or text) of the query / target side to its row in the trainer's item or text arrays."""
    pairs = ps.train[["query", "target"]]
    if ps.symmetric:
        pairs = pd.concat([pairs, pairs.rename(columns={"query": "target", "target": "query"})], ignore_index=True)
    queries = sorted(pairs["query"].unique().tolist())
    corpus = sorted(pairs["target"].unique().tolist())  # training targets only: held-out items never appear
    corpus_row = {c: i for i, c in enumerate(corpus)}
    by_query = pairs.groupby("query")["target"].agg(list)
    positives = [np.array(sorted(corpus_row[t] for t in by_query[q]), np.int64) for q in queries]
    self_rows = np.array([corpus_row.get(q, -1) for q in queries], np.int64) if ps.query_kind == ps.target_kind \
        else None
    try:
        mined = mine_hard_negatives(embedder(ps.query_kind, queries, "query", ps.task),
                                    embedder(ps.target_kind, corpus, "target", ps.task), positives, k, self_rows,
                                    cfg.pool, cfg.threshold_queries, cfg.seed)
    except ValueError as e:  # every scored pair a positive (or none): no threshold to choose
        log.warning("hard negatives %s: none mined (%s); its batches keep in-batch negatives only", ps.name, e)
        return str(e)
    to_target = np.array([target_row[c] for c in corpus], np.int64)
    table = np.full((len(query_row), k), -1, np.int64)
    table[[query_row[q] for q in queries]] = np.where(mined.negatives >= 0,
                                                       to_target[np.maximum(mined.negatives, 0)], -1)
    log.info("hard negatives %s: lambda*=%.4f (F1 %.3f), %d likely false negatives dropped, %d found (k=%d)",
             ps.name, mined.threshold, mined.info["f1"], mined.info["dropped"], mined.info["found"], k)
    return table, mined


__all__ = ["MiningConfig", "RecipeState", "balanced_stage_weights", "mine_pair_set", "pair_vectors", "plain_columns"]
