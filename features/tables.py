"""The four feature source tables of a run, built from the dataset and the item-embedding table.

The Matryoshka prefix and the semantic-ID levels the interests are mined with come from the FeatureConfig (the
same one the repository's schema is built from); an InterestConfig given beside it must agree with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.definitions import FeatureConfig
from features.interests import InterestConfig, daily_snapshots, mine_interests
from features.schema import CF_ITEM_VECTOR, CF_USER_VECTOR
from features.statistics import StatsConfig, item_stats, user_stats
from recsys.data.dataset import Dataset
from recsys.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def interest_config_for(cfg: FeatureConfig, interest_cfg: InterestConfig | None = None) -> InterestConfig:
    """The InterestConfig to mine with under `cfg`: `interest_cfg` (default: all defaults but cfg's prefix_dim),
    refused when its prefix disagrees with the repository's."""
    if interest_cfg is None:
        return InterestConfig(prefix_dim=cfg.prefix_dim)
    if interest_cfg.prefix_dim != cfg.prefix_dim:
        raise ConfigError(f"features.interests.prefix_dim={interest_cfg.prefix_dim} disagrees with "
                          f"FeatureConfig.prefix_dim={cfg.prefix_dim}: the interests must be mined with the prefix "
                          "the feature schema declares")
    return interest_cfg


def build_feature_tables(ds: Dataset, item_embeddings: pd.DataFrame, start, end, cfg: FeatureConfig,
                         interest_cfg: InterestConfig | None = None, stats_cfg: StatsConfig | None = None,
                         spark: SparkSession | None = None, scratch_dir: str | Path | None = None
                         ) -> dict[str, pd.DataFrame]:
    """All four source tables (features.schema.SOURCES), with daily snapshots from start's day to end's day.

    Interests use ds's positive interactions, stats all interactions (every row is an impression); both only
    count events strictly before each snapshot, so every period may be used (contracts: point-in-time rule).
    With `spark` the interests and statistics run as Spark jobs (features.spark_jobs): the same tables, back
    through parquet under `scratch_dir` (None: the system's temporary directory; a cluster needs a shared one).
    """
    interest_cfg = interest_config_for(cfg, interest_cfg)
    snaps = daily_snapshots(start, end)
    inter = ds.interactions
    pos = ds.is_positive(inter)
    if spark is not None:
        from features.spark_jobs import spark_entity_stats, spark_mine_interests

        events = spark.createDataFrame(_spark_events(inter, pos))
        events.cache()
        tables = {"item_embedding": item_embeddings,
                  "user_interests": spark_mine_interests(spark, events.where("positive"), item_embeddings, snaps,
                                                         interest_cfg, sid_levels=cfg.sid_levels,
                                                         scratch_dir=scratch_dir),
                  "item_stats": spark_entity_stats(spark, events, snaps, "item_id", "item", stats_cfg,
                                                   scratch_dir=scratch_dir),
                  "user_stats": spark_entity_stats(spark, events, snaps, "user_id", "user", stats_cfg,
                                                   scratch_dir=scratch_dir)}
        events.unpersist()
        return tables
    return {
        "item_embedding": item_embeddings,
        "user_interests": mine_interests(inter.loc[pos], item_embeddings, snaps, interest_cfg,
                                         sid_levels=cfg.sid_levels),
        "item_stats": item_stats(inter, pos, snaps, stats_cfg),
        "user_stats": user_stats(inter, pos, snaps, stats_cfg),
    }


def _spark_events(inter: pd.DataFrame, pos: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"user_id": inter["user_id"].to_numpy("int64"), "item_id": inter["item_id"].to_numpy("int64"),
                         "timestamp": pd.to_datetime(inter["timestamp"], utc=True).dt.as_unit("us").reset_index(
                             drop=True), "positive": pos.to_numpy(bool)})


def collaborative_tables(user_vectors: pd.DataFrame, item_vectors: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The user_cf and item_cf sources from a teacher's export (embedding.teachers.export: id, embedding,
    event_timestamp = the end of the period it was trained on)."""
    return {"user_cf": user_vectors[["user_id", "event_timestamp", "embedding"]].rename(
                columns={"embedding": CF_USER_VECTOR}),
            "item_cf": item_vectors[["item_id", "event_timestamp", "embedding"]].rename(
                columns={"embedding": CF_ITEM_VECTOR})}
