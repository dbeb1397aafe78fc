"""What CRE trains on, as rows of the encoded items: seq2item sequences, teacher vectors, auxiliary i2i pairs.

    teacher_matrix(table, name)                     a teacher's item table -> (item ids, unit vectors), checked
    build_cre_data(ds, item_ids, base_vectors, teachers, history_events, eval_targets, cfg, device) -> CREData

Only TRAIN-split positives minus each user's last one are read (embedding.cre.sequences.seq2item_events); the
auxiliary i2i pairs also leave out every item the content stage held out for its i2i evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from embedding.cre.config import CREConfig
from embedding.cre.sequences import build_sequences
from embedding.evaluate import normalize
from embedding.tasks import PairConfig, build_i2i_pairs
from recsys.data.dataset import Dataset

log = logging.getLogger(__name__)


def teacher_matrix(table: pd.DataFrame, name: str = "teacher") -> tuple[np.ndarray, np.ndarray]:
    """(item_ids [V] int64, vectors [V, Dt] float32 L2-normalised) from a teacher's item-embeddings table
    (columns item_id, embedding). Raises ValueError naming the teacher and the bad item."""
    missing = {"item_id", "embedding"} - set(table.columns)
    if missing:
        raise ValueError(f"teacher {name!r}: table lacks columns {sorted(missing)} (has {list(table.columns)})")
    ids = table["item_id"].to_numpy(np.int64)
    if len(ids) == 0:
        raise ValueError(f"teacher {name!r}: empty item-embeddings table")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"teacher {name!r}: duplicate item_id {int(ids[pd.Index(ids).duplicated()][0])}")
    dims = table["embedding"].map(len).to_numpy()
    if (dims != dims[0]).any():
        bad = int(np.flatnonzero(dims != dims[0])[0])
        raise ValueError(f"teacher {name!r}: item_id {int(ids[bad])} has dimension {dims[bad]}, expected {dims[0]}")
    vectors = np.stack(table["embedding"].to_numpy()).astype(np.float32)
    finite = np.isfinite(vectors).all(1) & (np.linalg.norm(vectors, axis=1) > 0)
    if not finite.all():
        raise ValueError(f"teacher {name!r}: item_id {int(ids[~finite][0])} has a non-finite or zero vector")
    return ids, normalize(vectors)


def aux_i2i_pairs(ds: Dataset, eval_targets: pd.DataFrame, cfg: PairConfig) -> tuple[pd.DataFrame, set]:
    """Co-engagement pairs for the auxiliary i2i loss: built as the content trainer builds them (train split)
    but (1) from interactions without the seq2item evaluation targets (each user's last train positive), and
    (2) without any pair touching an item the content stage held out for its i2i evaluation.
    -> (pairs[query, target], held-out items)."""
    canonical = build_i2i_pairs(ds, cfg)
    held = set(canonical.holdout["query"].tolist())
    key = ["user_id", "item_id", "timestamp"]
    inter = ds.interactions.merge(eval_targets[key].drop_duplicates().assign(_eval=True), on=key, how="left")
    reduced = Dataset(ds.manifest, ds.items, ds.interactions.loc[inter["_eval"].isna().to_numpy()])
    ps = build_i2i_pairs(reduced, cfg.model_copy(update={"holdout_fraction": 0.0}))
    pairs = ps.train[["query", "target"]]
    pairs = pairs.loc[~pairs["query"].isin(held) & ~pairs["target"].isin(held)].reset_index(drop=True)
    return pairs, held


@dataclass
class SequenceRows:
    """Seq2item examples of one kind as item rows: history [S, L] (-1 = padding), target [S]."""

    history: np.ndarray
    target: np.ndarray
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class TeacherRows:
    """One teacher over the item rows: vectors [N, Dt] (zeros outside its vocabulary), in_vocab [N] bool."""

    vectors: torch.Tensor
    in_vocab: np.ndarray


@dataclass
class CREData:
    item_ids: np.ndarray  # [N] int64, the rows of the encoded items
    base_vectors: np.ndarray  # [N, D] the content model's item embeddings (anchor, filter, "before" metrics)
    sequences: dict[str, SequenceRows]  # kind -> examples (kinds with at least 2)
    teachers: dict[str, TeacherRows]
    distill_rows: np.ndarray  # rows in some teacher's vocabulary: the distillation targets
    aux_pairs: tuple[np.ndarray, np.ndarray] | None  # (query rows, target rows); None: the aux loss is off
    info: dict


def _filter_vectors(cfg: CREConfig, base_vectors: np.ndarray, teachers: dict[str, tuple[np.ndarray, np.ndarray]],
                    row_of: pd.Index) -> np.ndarray:
    """Reference vectors of the filtered sequences: the content model's, or a teacher's item-ID vectors (items
    outside its vocabulary get 0, ranked last)."""
    if cfg.filter_by == "content":
        return base_vectors
    if cfg.filter_by not in teachers:
        raise ValueError(f"filter_by={cfg.filter_by!r}: expected 'content' or a teacher name {sorted(teachers)}")
    ids, vec = teachers[cfg.filter_by]
    out = np.zeros((len(row_of), vec.shape[1]), np.float32)
    rows = row_of.get_indexer(ids)
    out[rows[rows >= 0]] = vec[rows >= 0]
    return out


def build_cre_data(ds: Dataset, item_ids: np.ndarray, base_vectors: np.ndarray,
                   teachers: dict[str, tuple[np.ndarray, np.ndarray]], history_events: pd.DataFrame,
                   eval_targets: pd.DataFrame, cfg: CREConfig, device: torch.device) -> CREData:
    item_ids = np.asarray(item_ids, dtype=np.int64)
    row_of, n = pd.Index(item_ids), len(item_ids)

    # seq2item sequences (TRAIN positives minus each user's last) -> item rows
    events = history_events.loc[history_events["item_id"].isin(row_of)]
    filter_vectors = _filter_vectors(cfg, base_vectors, teachers, row_of)
    sequences = {}
    for kind in cfg.kinds if cfg.uses_sequences else []:
        s = build_sequences(events, kind, cfg.history_len, item_ids, filter_vectors, cfg.min_history,
                            cfg.max_lookback, seed=cfg.seed)
        if len(s) >= 2:
            sequences[kind] = SequenceRows(row_of.get_indexer(s.history.reshape(-1)).reshape(s.history.shape),
                                           row_of.get_indexer(s.target), s.info)
    if cfg.seq2item_steps and not sequences:
        raise ValueError("no seq2item sequences: no user has enough train positives "
                         f"(min_history={cfg.min_history}); lower min_history or set seq2item_steps=0")

    # teachers: vocabulary ∩ encoded items
    rows_of_teacher = {}
    for name, (ids, vec) in teachers.items():
        rows = row_of.get_indexer(ids)
        if (rows < 0).any():
            log.warning("teacher %s: %d of %d items have no encoder output; skipped", name, int((rows < 0).sum()),
                        len(rows))
        full = np.zeros((n, vec.shape[1]), np.float32)
        full[rows[rows >= 0]] = vec[rows >= 0]
        in_vocab = np.zeros(n, bool)
        in_vocab[rows[rows >= 0]] = True
        rows_of_teacher[name] = TeacherRows(torch.as_tensor(full, device=device), in_vocab)
    distill_rows = (np.flatnonzero(np.logical_or.reduce([t.in_vocab for t in rows_of_teacher.values()]))
                    if rows_of_teacher else np.zeros(0, int))
    if cfg.id2item_steps and len(distill_rows) < 2:
        raise ValueError("ID2item: fewer than 2 encoded items have a teacher vector")

    # auxiliary i2i pairs
    aux = None
    if cfg.uses_aux_i2i:
        pairs, _ = aux_i2i_pairs(ds, eval_targets, cfg.pairs)
        pairs = pairs.loc[pairs["query"].isin(row_of) & pairs["target"].isin(row_of)]
        aux = (row_of.get_indexer(pairs["query"]), row_of.get_indexer(pairs["target"]))
        if len(aux[0]) < 2:
            log.warning("ID2item: no co-engagement pairs for the auxiliary i2i loss; it is skipped")
            aux = None
    info = {"sequences": {k: v.info for k, v in sequences.items()}, "aux_pairs": int(len(aux[0]) if aux else 0),
            "teacher_items": {k: int(v.in_vocab.sum()) for k, v in rows_of_teacher.items()},
            "distill_items": int(len(distill_rows)), "cold_items": int(n - len(distill_rows)), "items": int(n)}
    log.info("CRE data: %s", info)
    return CREData(item_ids, base_vectors, sequences, rows_of_teacher, distill_rows, aux, info)


__all__ = ["CREData", "SequenceRows", "TeacherRows", "aux_i2i_pairs", "build_cre_data", "teacher_matrix"]
