"""Batch inference: item and text embeddings, and the item-embeddings table.

Items are embedded in the *target* role, queries/label texts in the *query* role (SAIL: query and target carry
different instructions). Rows are processed sorted by text length so each batch carries little padding, under
`torch.inference_mode` (no autograd bookkeeping: the outputs leave as numpy), 128 rows a batch by default (5% faster
than 256 with the demo model on one or two cores; benchmarks/fusion_inference.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from embedding.batches import collate, collate_texts
from embedding.encoders.types import EncodedItems, TextTokens
from embedding.guards import check_embeddings, check_semantic_ids
from embedding.model import OmniEmbeddingModel
from recsys.data.dataset import Dataset
from recsys.errors import DataError
from recsys.io import atomic_file
from recsys.runtime import resolve_device

ITEM_ROLE, ITEM_TASK = "target", "i2i"  # the instruction every item-embeddings table is written with


def _length_order(field: np.ndarray) -> np.ndarray:
    return np.argsort((field >= 0).sum(1), kind="stable")


@torch.inference_mode()
def _run(model: OmniEmbeddingModel, n: int, order: np.ndarray, make_batch, role: str, task: str,
         batch_size: int, dim: int | None, desc: str) -> np.ndarray:
    was_training = model.training
    model.eval()
    D = dim or model.config.embed_dim
    out = np.zeros((n, D), dtype=np.float32)
    try:
        for s in tqdm(range(0, n, batch_size), desc=desc, disable=None, leave=False):
            rows = order[s:s + batch_size]
            emb = model(make_batch(rows), role=role, task=task)
            e = emb.truncate(D) if dim else emb.embedding
            out[rows] = e.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def embed_items(model: OmniEmbeddingModel, encoded: EncodedItems, batch_size: int = 128, device: str = "auto",
                role: str = ITEM_ROLE, task: str = ITEM_TASK, dim: int | None = None,
                rows: np.ndarray | None = None) -> np.ndarray:
    """Embeddings [N, D] float32 (L2-normalised; `dim` = a Matryoshka prefix) of `encoded` (or its `rows`)."""
    dev = resolve_device(device)
    model.to(dev)
    rows = np.arange(len(encoded)) if rows is None else np.asarray(rows)
    order = _length_order(encoded.text.field[rows])
    return _run(model, len(rows), order, lambda r: collate(encoded, rows[r], dev), role, task, batch_size, dim,
                "embed items")


def embed_texts(model: OmniEmbeddingModel, tokens: TextTokens, batch_size: int = 128, device: str = "auto",
                role: str = "query", task: str = "q2i", dim: int | None = None) -> np.ndarray:
    """Embeddings [N, D] float32 of texts (queries, label texts), query role by default."""
    dev = resolve_device(device)
    model.to(dev)
    order = _length_order(tokens.field)
    return _run(model, len(tokens), order, lambda r: collate_texts(tokens, r, dev), role, task, batch_size, dim,
                "embed texts")


def pool_text_tokens(tokens: TextTokens) -> np.ndarray:
    """Mean of the valid token features [N, Dt] float32 (the text-only baseline's query side)."""
    m = (tokens.field >= 0).astype(np.float32)[..., None]
    s = (tokens.tokens.astype(np.float32) * m).sum(1)
    return s / np.maximum(m.sum(1), 1.0)


def write_item_embeddings(ds: Dataset, item_ids: np.ndarray, emb, sids: np.ndarray | None,
                          model_version: str, path: str | Path, expected_dim: int | None = None) -> Path:
    """Write the item-embeddings table atomically (parquet, microsecond UTC timestamps) after the degenerate-output
    guards (embedding.guards: constant or zero embeddings, one semantic ID for all items stop the run).

    Columns: item_id int64, embedding list<float32>, sid_0..sid_{L-1} int64, model_version str,
    event_timestamp = `ds.item_available_at()`: min(created_at, the item's first interaction). Content is known
    from the item's first appearance; a catalogue whose created_at is an ingestion time after the interactions
    would otherwise have no embedding at any example's time (point-in-time joins would find nothing).
    Raises DataError when an embedding has the wrong dimension, is not finite, or the table is degenerate.
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    vectors = [np.asarray(v, dtype=np.float32).reshape(-1) for v in emb]
    if len(vectors) != len(item_ids):
        raise ValueError(f"{len(vectors)} embeddings for {len(item_ids)} item ids")
    if expected_dim is None:
        expected_dim = len(vectors[0]) if vectors else 0
    for i, v in zip(item_ids, vectors):
        if len(v) != expected_dim:
            raise DataError(f"embedding of item_id {int(i)} has dimension {len(v)}, expected {expected_dim}",
                            file=str(path))
        if not np.isfinite(v).all():
            raise DataError(f"embedding of item_id {int(i)} has non-finite values", file=str(path))
    available = ds.item_available_at()
    missing = ~pd.Index(item_ids).isin(available.index)
    if missing.any():
        raise DataError(f"item_id {int(item_ids[missing][0])} is not in the dataset's items "
                        f"({int(missing.sum())} unknown)", file=str(path))
    check_embeddings(item_ids, np.stack(vectors) if vectors else np.zeros((0, expected_dim)),
                                    f"item embeddings {model_version}")
    df = pd.DataFrame({"item_id": item_ids, "embedding": vectors})
    if sids is not None:
        sids = np.asarray(sids, dtype=np.int64)
        if sids.ndim != 2 or len(sids) != len(item_ids):
            raise ValueError(f"sids must be [N={len(item_ids)}, levels], got shape {sids.shape}")
        check_semantic_ids(sids, f"semantic IDs {model_version}")
        for level in range(sids.shape[1]):
            df[f"sid_{level}"] = sids[:, level]
    df["model_version"] = str(model_version)
    df["event_timestamp"] = pd.to_datetime(available.loc[item_ids].to_numpy(), utc=True).astype("datetime64[us, UTC]")
    path = Path(path)
    with atomic_file(path) as tmp:
        df.to_parquet(tmp, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    return path
