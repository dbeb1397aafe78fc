"""The feature batch jobs on Spark, giving the same tables as the local path (features.statistics,
features.interests) row for row, for users who outgrow one machine.

- `spark_entity_stats`: point-in-time impressions/positives/smoothed rate per entity and daily snapshot, in Spark
  SQL: a snapshot bucket per event, a count per (entity, bucket), cumulative sums over a window per entity, the
  global prior's cumulative sums over the (small) bucket table. Same arithmetic as the local path, in the same
  order, so the float32 rates are bit-identical.
- `spark_mine_interests`: the users hashed into buckets, `groupBy(bucket).applyInPandas` running the local
  `mine_interests` on each bucket's users (a user's rows depend on that user's events alone), the item table
  broadcast once to every executor.

Inputs are Spark DataFrames (read from the dataset's parquet on a cluster) or pandas frames (converted here); the
outputs come back as pandas frames sorted like the local path's. They come back through parquet that the executors
write under `scratch_dir` (on a cluster: a directory the driver shares with them), not through the driver's JVM:
collecting them there (toPandas) needs the whole table on its heap at once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.interests import InterestConfig, mine_interests
from features.statistics import StatsConfig, utc_snapshots

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INTEREST_TYPES = {"user_id": "bigint", "event_timestamp": "timestamp", "hist_len": "bigint",
                  "mean_emb": "array<float>", "recency_emb": "array<float>", "last_emb": "array<float>",
                  "centroids": "array<float>", "centroid_weights": "array<float>", "centroid_items": "array<bigint>",
                  "centroid_sids": "array<bigint>", "n_centroids": "bigint", "recent_items": "array<bigint>",
                  "recent_prefix": "array<float>", "recent_sids": "array<bigint>"}
"""The user_interests table's columns (features.interests.mine_interests) as Spark types."""


def _as_spark(spark: SparkSession, frame, columns: list[str]) -> DataFrame:
    if isinstance(frame, pd.DataFrame):
        pdf = frame[columns].copy()
        pdf["timestamp"] = pd.to_datetime(pdf["timestamp"], utc=True).dt.as_unit("us")
        return spark.createDataFrame(pdf)
    return frame.select(*columns)


def _us(column: str):
    """A timestamp column as int64 microseconds since the epoch (exact: Spark timestamps are microseconds)."""
    from pyspark.sql import functions as F

    return F.unix_micros(F.col(column))


def _collect(frame: DataFrame, scratch_dir: str | Path | None) -> pd.DataFrame:
    """The frame as pandas, written as parquet by the executors and read back here (temporary, removed)."""
    if scratch_dir is not None:
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="spark-") as tmp:
        frame.write.parquet(f"{tmp}/table")
        return pd.read_parquet(f"{tmp}/table")


def _to_local(pdf: pd.DataFrame, sort: list[str]) -> pd.DataFrame:
    pdf["event_timestamp"] = pd.to_datetime(pdf["event_timestamp"], utc=True).dt.as_unit("us")
    return pdf.sort_values(sort, kind="stable").reset_index(drop=True)


def spark_entity_stats(spark: SparkSession, interactions, snapshot_times, key: str, prefix: str,
                       cfg: StatsConfig | None = None, positive: str = "positive",
                       scratch_dir: str | Path | None = None) -> pd.DataFrame:
    """features.statistics.entity_stats on Spark. interactions: key, timestamp and a boolean `positive` column."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cfg = cfg or StatsConfig()
    snaps = utc_snapshots(snapshot_times)
    grid = snaps.asi8  # microseconds
    ev = _as_spark(spark, interactions, [key, "timestamp", positive])
    # the first snapshot strictly after each event: the number of snapshots at or before it
    snap_table = spark.createDataFrame(pd.DataFrame({"bucket": np.arange(len(grid), dtype=np.int64),
                                                     "snap_us": grid.astype(np.int64)}))
    bucket = F.pandas_udf(lambda t: pd.Series(np.searchsorted(grid, t.to_numpy(np.int64), side="right")),
                          "bigint")
    ev = (ev.select(F.col(key).cast("bigint").alias(key), bucket(_us("timestamp")).alias("bucket"),
                    F.col(positive).cast("bigint").alias("pos"))
          .where(F.col("bucket") < len(grid)))
    g = ev.groupBy(key, "bucket").agg(F.count("*").alias("imp"), F.sum("pos").alias("pos"))
    upto = Window.partitionBy(key).orderBy("bucket").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    g = g.select(key, "bucket", F.sum("imp").over(upto).alias("imp_cum"), F.sum("pos").over(upto).alias("pos_cum"))
    glob = ev.groupBy("bucket").agg(F.count("*").alias("imp"), F.sum("pos").alias("pos"))
    every = Window.orderBy("bucket").rowsBetween(Window.unboundedPreceding, Window.currentRow)  # one small partition
    glob = glob.select("bucket", ((F.sum("pos").over(every) + 1.0) / (F.sum("imp").over(every) + 2.0)).alias("prior"))
    m = float(cfg.prior_strength)
    out = (g.join(F.broadcast(glob), "bucket").join(F.broadcast(snap_table), "bucket")
           .select(F.col(key),
                   F.timestamp_micros("snap_us").alias("event_timestamp"),
                   F.col("imp_cum").alias(f"{prefix}_impressions"),
                   F.col("pos_cum").alias(f"{prefix}_positives"),
                   ((F.col("pos_cum") + F.lit(m) * F.col("prior")) / (F.col("imp_cum") + F.lit(m)))
                   .cast("float").alias(f"{prefix}_positive_rate")))
    pdf = _collect(out, scratch_dir)
    for c in (key, f"{prefix}_impressions", f"{prefix}_positives"):
        pdf[c] = pdf[c].astype(np.int64)
    pdf[f"{prefix}_positive_rate"] = pdf[f"{prefix}_positive_rate"].astype(np.float32)
    return _to_local(pdf, ["event_timestamp", key])


def spark_mine_interests(spark: SparkSession, interactions_positive, item_embeddings: pd.DataFrame,
                         snapshot_times, cfg: InterestConfig, *, sid_levels: int, buckets: int | None = None,
                         scratch_dir: str | Path | None = None) -> pd.DataFrame:
    """features.interests.mine_interests on Spark: every bucket of users mined by the same function."""
    from pyspark.sql import functions as F

    ev = _as_spark(spark, interactions_positive, ["user_id", "item_id", "timestamp"])
    n = buckets or int(spark.conf.get("spark.sql.shuffle.partitions"))
    items = spark.sparkContext.broadcast(item_embeddings)
    snaps = utc_snapshots(snapshot_times)
    columns = list(INTEREST_TYPES)

    def mine(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf["timestamp"] = pd.to_datetime(pdf["timestamp"], utc=True)
        out = mine_interests(pdf, items.value, snaps, cfg, sid_levels=sid_levels)
        return out[columns]

    schema = ", ".join(f"{c} {t}" for c, t in INTEREST_TYPES.items())
    mined = (ev.withColumn("bucket", F.pmod(F.xxhash64("user_id"), F.lit(n)))
             .groupBy("bucket").applyInPandas(mine, schema))
    pdf = _collect(mined, scratch_dir)
    items.unpersist()
    if pdf.empty:
        return mine_interests(_empty_events(), item_embeddings, snaps, cfg, sid_levels=sid_levels)
    for c, t in INTEREST_TYPES.items():
        if t == "bigint":
            pdf[c] = pdf[c].astype(np.int64)
        elif t.startswith("array"):
            dtype = np.float32 if t == "array<float>" else np.int64
            pdf[c] = [np.asarray(v, dtype) for v in pdf[c]]
    return _to_local(pdf, ["event_timestamp", "user_id"])


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series(dtype=np.int64), "item_id": pd.Series(dtype=np.int64),
                         "timestamp": pd.Series(dtype="datetime64[us, UTC]")})
