"""From a canonical Dataset to teacher training data: vocabularies, train positives, KJT batches.

Only TRAIN-split positive interactions are ever read (`ds.split.train(ds.interactions)` filtered by
`ds.is_positive`). Raw ids map to contiguous indices 1..N; index 0 is reserved for unknown ids.

A batch is a KeyedJaggedTensor. For the two-tower teacher (B pairs, every feature has one id per row)::

                  row 0    row 1    ...  row B-1
    user_id      [u0]     [u1]          [uB-1]
    item_id      [i0]     [i1]          [iB-1]
    neg_item_id  [n0]     [n1]          [nB-1]     (BPR only; empty rows for softmax)

For the sequence teacher (B windows of up to max_len items)::

                  row 0            row 1         ...
    seq          [a b c d]        [e f]              input items, time ordered, left aligned
    cand         [c0 .. c_k]      [c_k+1 ..]         candidate items (unique targets + negatives), spread
                                                     over the rows; only their concatenation matters
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.dataset import Dataset, build_dataset
from recsys.data.schema import PositiveRule
from recsys.data.split import leave_last_out
from recsys.io import write_text

UNKNOWN_INDEX = 0


@dataclass
class Vocab:
    """Raw int64 id <-> contiguous index; index 0 = unknown / padding, known ids are 1..len(ids)."""

    ids: np.ndarray  # [N] int64, sorted

    @classmethod
    def from_ids(cls, ids) -> Vocab:
        return cls(np.unique(np.asarray(ids, dtype=np.int64)))

    def __len__(self) -> int:
        """Number of known ids (the table has len + 1 rows)."""
        return len(self.ids)

    @property
    def num_embeddings(self) -> int:
        return len(self.ids) + 1

    def lookup(self, ids) -> np.ndarray:
        """Raw ids -> indices (int64); unknown ids -> UNKNOWN_INDEX."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
        known = (pos < len(self.ids)) & (self.ids[pos_c] == ids) if len(self.ids) else np.zeros(ids.shape, bool)
        return np.where(known, pos_c + 1, UNKNOWN_INDEX).astype(np.int64)

    def to_dict(self) -> dict:
        return {"unknown_index": UNKNOWN_INDEX, "ids": self.ids.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(np.asarray(d["ids"], dtype=np.int64))


def save_vocabs(path: Path, **vocabs: Vocab) -> None:
    """Atomically write {name: vocab} as JSON (index of ids[k] is k + 1; unknown -> 0)."""
    write_text(path, json.dumps({name: v.to_dict() for name, v in vocabs.items()}))


def load_vocabs(path: Path) -> dict[str, Vocab]:
    return {name: Vocab.from_dict(d) for name, d in json.loads(Path(path).read_text()).items()}


def train_positives(ds: Dataset) -> pd.DataFrame:
    """Train-split positive interactions (user_id, item_id, timestamp), ordered by user, time, item."""
    train = ds.split.train(ds.interactions)
    pos = train.loc[ds.is_positive(train), ["user_id", "item_id", "timestamp"]]
    return pos.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)


@dataclass
class TeacherData:
    """What both teachers train and evaluate on.

    `fit` are the rows the models learn from; with holdout_last it is `positives` minus each user's last event
    (users with at least 2 train positives), and `history`/`targets` are leave_last_out of `positives`.
    """

    positives: pd.DataFrame         # all train positives
    fit: pd.DataFrame               # rows used for fitting
    history: pd.DataFrame | None    # leave-last-out history (None without holdout)
    targets: pd.DataFrame | None    # leave-last-out targets, one row per user
    users: Vocab
    items: Vocab
    train_end: pd.Timestamp


def teacher_data(ds: Dataset, holdout_last: bool = True, min_history: int = 2) -> TeacherData:
    pos = train_positives(ds)
    if len(pos) == 0:
        raise ValueError("teachers: the train split has no positive interactions "
                         f"(rule {ds.positive.describe()}, train_end {ds.split.train_end})")
    users, items = Vocab.from_ids(pos["user_id"]), Vocab.from_ids(pos["item_id"])
    history = targets = None
    fit = pos
    if holdout_last:
        history, targets = leave_last_out(pos, min_history=min_history)
        short = pos.loc[~pos["user_id"].isin(targets["user_id"])]
        fit = (pd.concat([history, short], ignore_index=True)
               .sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True))
    return TeacherData(pos, fit, history, targets, users, items, ds.split.train_end)


# --- batching -------------------------------------------------------------------------------------------------

def kjt(features: dict[str, tuple[np.ndarray, np.ndarray]], device: torch.device) -> KeyedJaggedTensor:
    """{feature: (values int64, lengths int32 [B])} -> KeyedJaggedTensor (every feature has the same B)."""
    keys = list(features)
    values = np.concatenate([features[k][0] for k in keys]).astype(np.int64)
    lengths = np.concatenate([features[k][1] for k in keys]).astype(np.int32)
    return KeyedJaggedTensor.from_lengths_sync(
        keys=keys, values=torch.from_numpy(values).to(device), lengths=torch.from_numpy(lengths).to(device))


def global_batches(n: int, batch: int, rng: np.random.Generator, world_size: int, rank: int):
    """Shuffled global batches of `batch` rows; yields this rank's share (rows rank::world_size).

    Every rank draws the same permutation, so all ranks take the same number of steps; a trailing batch with
    fewer rows than ranks is dropped so that no rank gets an empty batch.
    """
    perm = rng.permutation(n)
    for start in range(0, n, batch):
        idx = perm[start:start + batch]
        if len(idx) < world_size:
            break
        yield idx[rank::world_size]


def n_steps(n: int, batch: int, world_size: int) -> int:
    full, rest = divmod(n, batch)
    return full + (1 if rest >= world_size else 0)


def sequence_windows(fit: pd.DataFrame, items: Vocab, max_len: int) -> list[np.ndarray]:
    """Cut each user's time-ordered item sequence into windows of up to max_len + 1 items.

    Windows are taken from the end and overlap by one item, so every transition a -> b is a training target
    exactly once. `fit` must be ordered by user, time. Returns item-index arrays.
    """
    wins = []
    for _, g in fit.groupby("user_id", sort=True):
        seq = items.lookup(g["item_id"].to_numpy())
        end = len(seq)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            wins.append(seq[start:end])
            end = start + 1 if start > 0 else 0
    return wins


def last_sequences(df: pd.DataFrame, items: Vocab, max_len: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per user (sorted by user_id): raw user id and the index sequence of their last max_len items."""
    uids, seqs = [], []
    for uid, g in df.groupby("user_id", sort=True):
        uids.append(uid)
        seqs.append(items.lookup(g["item_id"].to_numpy())[-max_len:])
    return np.asarray(uids, dtype=np.int64), seqs


# --- a small structured world for tests and benchmarks ----------------------------------------------------------

def cluster_markov_dataset(n_items: int = 200, n_clusters: int = 10, n_users: int = 60, events_per_user: int = 40,
                           p_next: float = 0.7, p_switch: float = 0.1, p_negative: float = 0.15,
                           days: float = 60.0, split: tuple[float, float] = (0.1, 0.1), seed: int = 0):
    """A Dataset with strong collaborative and sequential structure (no content).

    Items fall into `n_clusters` equal blocks, each ordered in a cycle. A user likes 1-2 clusters; after item i
    the next event is i's successor in its cycle with probability p_next, a random item of another liked cluster
    with p_switch, else a random item of the current cluster. A fraction p_negative of the events are
    impressions of random items without a like (label like = 0). Positive rule: like >= 1.
    """
    rng = np.random.default_rng(seed)
    size = n_items // n_clusters
    start = pd.Timestamp("2026-01-01", tz="UTC")
    items = pd.DataFrame({"item_id": np.arange(n_items, dtype=np.int64) + 1000,
                          "created_at": start - pd.Timedelta(days=1)})
    rows = []
    for u in range(n_users):
        liked = rng.choice(n_clusters, size=rng.integers(1, 3), replace=False)
        c = int(rng.choice(liked))
        i = int(c * size + rng.integers(size))
        times = np.sort(rng.uniform(0, days, events_per_user))
        for t in times:
            if rng.random() < p_negative:
                rows.append((u, int(rng.integers(n_items)), t, 0.0))
                continue
            rows.append((u, i, t, 1.0))
            r = rng.random()
            if r < p_next:
                i = c * size + (i - c * size + 1) % size
            elif r < p_next + p_switch and len(liked) > 1:
                c = int(rng.choice([x for x in liked if x != c]))
                i = int(c * size + rng.integers(size))
            else:
                i = int(c * size + rng.integers(size))
    df = pd.DataFrame(rows, columns=["user_id", "item", "t", "like"])
    inter = pd.DataFrame({"user_id": df["user_id"].astype(np.int64) + 1,
                          "item_id": df["item"].astype(np.int64) + 1000,
                          "timestamp": start + pd.to_timedelta(df["t"], unit="D"),
                          "like": df["like"].astype(np.float32)})
    return build_dataset(name="cluster-markov", source="embedding.teachers.data.cluster_markov_dataset", items=items,
                         interactions=inter, labels={"like": "liked the item"}, positive=PositiveRule("like", 1.0),
                         split=split)
