"""Teacher exports: item (and user) embedding tables as parquet, written atomically, plus the vocabulary.

Layout of a teacher directory (`<out>/id` or `<out>/sequence`)::

    item_embeddings.parquet   item_id int64, embedding list<float32> (D), model_version str,
                              event_timestamp timestamp[us, UTC] (= the split's train_end: what the teacher knew)
    user_embeddings.parquet   user_id int64, embedding, model_version, event_timestamp
    vocab.json                {"items": {"unknown_index": 0, "ids": [...]}, "users": ...}; index of ids[k] = k + 1
    metrics.json, config.json

Embeddings are L2-normalised; a user's score for an item is their dot product (the teachers train cosine /
temperature).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.io import atomic_file

ITEM_EMBEDDINGS = "item_embeddings.parquet"
USER_EMBEDDINGS = "user_embeddings.parquet"
VOCAB = "vocab.json"
METRICS = "metrics.json"
CONFIG = "config.json"


def model_version(kind: str, config: dict, content_hash: str, world_size: int) -> str:
    """Deterministic version: teacher kind + hash of its config, the dataset content and the world size."""
    blob = json.dumps({"config": config, "data": content_hash, "world_size": world_size}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def embedding_table(id_column: str, ids: np.ndarray, vectors: np.ndarray, version: str,
                    event_timestamp: pd.Timestamp) -> pd.DataFrame:
    vectors = np.asarray(vectors, dtype=np.float32)
    return pd.DataFrame({
        id_column: np.asarray(ids, dtype=np.int64),
        "embedding": list(vectors),
        "model_version": version,
        "event_timestamp": pd.Series([event_timestamp] * len(ids), dtype="datetime64[us, UTC]"),
    })


def write_embeddings(df: pd.DataFrame, path: Path) -> None:
    """Write an embedding table with an explicit schema (list<float32>), atomically."""
    path = Path(path)
    id_column = df.columns[0]
    dim = len(df["embedding"].iloc[0]) if len(df) else 0
    flat = np.concatenate(df["embedding"].to_list()).astype(np.float32) if len(df) else np.zeros(0, np.float32)
    offsets = np.arange(len(df) + 1, dtype=np.int32) * dim
    table = pa.table({
        id_column: pa.array(df[id_column].to_numpy(np.int64)),
        "embedding": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float32())),
        "model_version": pa.array(df["model_version"].astype(str).tolist(), type=pa.string()),
        "event_timestamp": pa.array(df["event_timestamp"], type=pa.timestamp("us", tz="UTC")),
    })
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)


def embedding_matrix(df: pd.DataFrame) -> np.ndarray:
    """[N, D] float32 from an embedding table's `embedding` column."""
    return np.stack(df["embedding"].to_numpy()).astype(np.float32) if len(df) else np.zeros((0, 0), np.float32)
