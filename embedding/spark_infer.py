"""Batch embedding inference and semantic-ID assignment as Spark jobs (`engine: spark`): the same arrays as
embedding.infer.embed_items and ResidualKMeans.encode in one process (tests/embedding/test_spark_infer.py).

Inference: the driver cuts the catalogue into the batches the local path runs (length-sorted, `batch_size` rows)
and writes whole batches into shards (embedding.encoders.types.save_encoded) under a directory every executor can
read (on a cluster: the run directory on a shared file system). One Spark task per shard embeds its batches in
order with the model loaded once per Python worker from the model directory, so every item is embedded in the same
batch, with the same padding, as it is locally. Semantic IDs: the fitted codebooks are broadcast and each
partition of the embeddings is encoded on its executor.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from embedding.batches import collate
from embedding.encoders.types import EncodedItems, load_encoded, save_encoded
from embedding.infer import ITEM_ROLE, ITEM_TASK, _length_order, _run
from embedding.model import OmniEmbeddingModel
from embedding.semantic_ids import ResidualKMeans
from recsys.io import atomic_file
from recsys.runtime import resolve_device

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SHARD_BATCHES = 16
"""Inference batches per shard (one Spark task): 2,048 items at the default batch size."""

_MODELS: dict[str, OmniEmbeddingModel] = {}  # per Python worker: model_dir@device -> model


def _model(model_dir: str, device: str) -> OmniEmbeddingModel:
    key = f"{model_dir}@{device}"
    if key not in _MODELS:
        _MODELS[key] = OmniEmbeddingModel.from_pretrained(model_dir).to(resolve_device(device))
    return _MODELS[key]


def write_shards(encoded: EncodedItems, batch_size: int, out_dir: Path,
                 shard_batches: int = SHARD_BATCHES) -> list[Path]:
    """The catalogue in length order, `shard_batches` whole batches per shard file (replacing `out_dir`)."""
    order = _length_order(encoded.text.field)
    rows = batch_size * shard_batches
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    paths = []
    for i, start in enumerate(range(0, len(order), rows)):
        path = out_dir / f"shard-{i:05d}.npz"
        with atomic_file(path) as tmp:
            save_encoded(encoded.take(order[start:start + rows]), tmp)
        paths.append(path)
    return paths


def _embed_shards(frames: Iterator[pd.DataFrame], model_dir: str, device: str, batch_size: int, role: str,
                  task: str, dim: int | None) -> Iterator[pd.DataFrame]:
    dev = resolve_device(device)
    for frame in frames:
        for path in frame["path"]:
            shard = load_encoded(path)
            model = _model(model_dir, device)
            emb = _run(model, len(shard), np.arange(len(shard)), lambda r, s=shard: collate(s, r, dev), role, task,
                       batch_size, dim, "embed shard")
            yield pd.DataFrame({"item_id": shard.item_ids, "embedding": list(emb)})


def spark_embed_items(spark: SparkSession, model_dir: str | Path, encoded: EncodedItems, shard_dir: Path,
                      batch_size: int = 128, device: str = "auto", role: str = ITEM_ROLE, task: str = ITEM_TASK,
                      dim: int | None = None) -> np.ndarray:
    """embed_items(OmniEmbeddingModel.from_pretrained(model_dir), encoded, ...) as a Spark job: [N, D] float32
    in the order of `encoded`."""
    ids = pd.Index(encoded.item_ids)
    if not ids.is_unique:
        raise ValueError("encoded items repeat an item_id; embed each item once")
    paths = write_shards(encoded, batch_size, shard_dir)
    model_dir, args = str(Path(model_dir).resolve()), (device, batch_size, role, task, dim)
    shards = spark.sparkContext.parallelize([(str(p),) for p in paths], numSlices=len(paths)).toDF("path string")
    out = shards.mapInPandas(lambda frames: _embed_shards(frames, model_dir, *args),
                             "item_id long, embedding array<float>").toArrow()
    vectors = np.stack(out.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32, copy=False)
    emb = np.empty_like(vectors)
    emb[ids.get_indexer(out.column("item_id").to_numpy())] = vectors
    shutil.rmtree(shard_dir)
    return emb


def _encode_partitions(frames: Iterator[pd.DataFrame], codebooks: list[np.ndarray]) -> Iterator[pd.DataFrame]:
    quantiser = ResidualKMeans(levels=len(codebooks), codebook_size=max(len(c) for c in codebooks))
    quantiser.codebooks = codebooks
    for frame in frames:
        codes = quantiser.encode(np.stack(frame["embedding"].to_numpy()))
        yield pd.DataFrame({"row": frame["row"], "sids": list(codes)})


def spark_semantic_ids(spark: SparkSession, quantiser: ResidualKMeans, emb: np.ndarray,
                       partitions: int | None = None) -> np.ndarray:
    """quantiser.encode(emb) as a Spark job: [N, levels] int64."""
    if not quantiser.codebooks:
        raise RuntimeError("ResidualKMeans is not fitted; fit it before assigning semantic IDs")
    frame = pd.DataFrame({"row": np.arange(len(emb), dtype=np.int64), "embedding": list(np.asarray(emb, np.float32))})
    codebooks = spark.sparkContext.broadcast(quantiser.codebooks)
    table = (spark.createDataFrame(frame, "row long, embedding array<float>")
             .repartition(partitions or spark.sparkContext.defaultParallelism)
             .mapInPandas(lambda frames: _encode_partitions(frames, codebooks.value), "row long, sids array<long>")
             .toArrow())
    codes = np.empty((len(emb), len(quantiser.codebooks)), dtype=np.int64)
    codes[table.column("row").to_numpy()] = np.stack(table.column("sids").to_numpy(zero_copy_only=False))
    codebooks.unpersist()
    return codes
