"""Column names of the feature source tables, in one place.

The builders (features.interests, features.statistics), the Feast definitions, the repository's write checks and
the match features all name the same columns; the number of semantic-ID levels L decides some of them
(`sid_0..sid_{L-1}` of an item, L values per item in the interest lists), so they are functions of L.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from recsys.errors import DataError

SOURCES = ("item_embedding", "user_interests", "item_stats", "user_stats")
"""Names of the parquet sources (and of their feature views) every repository has."""
COLLABORATIVE_SOURCES = ("user_cf", "item_cf")
"""The ID teacher's user and item vectors (FeatureConfig.cf_dim > 0): the collaborative score of the baseline."""
CF_USER_VECTOR, CF_ITEM_VECTOR = "cf_user_vector", "cf_item_vector"


def source_names(collaborative: bool) -> tuple[str, ...]:
    """The repository's sources: SOURCES, plus COLLABORATIVE_SOURCES when it has the collaborative views."""
    return SOURCES + COLLABORATIVE_SOURCES if collaborative else SOURCES


REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "item_embedding": ("item_id", "embedding", "model_version", "event_timestamp"),
    "user_interests": ("user_id", "event_timestamp", "hist_len", "mean_emb", "recency_emb", "last_emb",
                       "centroids", "centroid_weights", "centroid_items", "centroid_sids", "n_centroids",
                       "recent_items", "recent_prefix", "recent_sids"),
    "item_stats": ("item_id", "event_timestamp", "item_impressions", "item_positives", "item_positive_rate"),
    "user_stats": ("user_id", "event_timestamp", "user_impressions", "user_positives", "user_positive_rate"),
    "user_cf": ("user_id", "event_timestamp", CF_USER_VECTOR),
    "item_cf": ("item_id", "event_timestamp", CF_ITEM_VECTOR),
}
"""Columns every source table must have besides its semantic IDs (item_embedding also has `sid_columns(L)`)."""

ROW_TIME = "row_time"
"""A row's own event_timestamp as int64 microseconds, added by FeatureRepo.write to the ROW_TIME_SOURCES: point-in-time
retrieval asks Feast which row applies (this column) and reads that row's list columns from the source by it."""
ROW_TIME_SOURCES = ("user_interests", "item_embedding", "user_cf", "item_cf")
"""The sources whose list columns are too heavy to move through the offline store's join (and whose rows many
examples share: read once, the same vector object serves them all)."""

_SID_COLUMN = re.compile(r"sid_(\d+)")


def sid_columns(levels: int) -> list[str]:
    """The semantic-ID columns of an item, coarsest first: sid_0 .. sid_{levels-1}."""
    return [f"sid_{level}" for level in range(levels)]


def sid_levels_of(columns: Iterable[str]) -> int:
    """How many semantic-ID levels a frame carries (its sid_<l> columns), checked to be sid_0 .. sid_{L-1}."""
    found = sorted(int(m.group(1)) for c in columns if (m := _SID_COLUMN.fullmatch(str(c))))
    if found != list(range(len(found))):
        raise DataError(f"semantic-ID columns must be sid_0 .. sid_{{L-1}}, found {[f'sid_{x}' for x in found]}")
    return len(found)


def check_sid_columns(df: pd.DataFrame, levels: int, file: str = "item_embedding") -> list[str]:
    """The item table's semantic-ID columns, refused unless they are exactly sid_0 .. sid_{levels-1}."""
    found = sid_levels_of(df.columns)
    if found != levels:
        raise DataError(f"the item table has {found} semantic-ID levels but FeatureConfig.sid_levels is {levels} "
                        "(embedding.semantic_ids.levels)", file=file)
    return sid_columns(levels)
