"""The Feast feature repository, read top to bottom like a schema.

Order (Feast template style): entities, sources, feature views, on-demand (match) views, feature services.
The objects are built by `build_definitions(paths, cfg)` with source paths RELATIVE to the repository directory
(Feast resolves them against its repo_path), so a run directory can be moved or copied; the generated repo
directory holds a tiny `repo_definitions.py` that calls it, so `feast apply` works there too.

Timestamps: every source has `event_timestamp` (tz-aware UTC, microseconds). Item embeddings are stamped with the
item's AVAILABILITY time (the embedding stage writes min(created_at, first interaction)): an example at t sees the
item's embedding and semantic IDs iff availability <= t, and interest mining uses an item from the same time on
(features.interests). Interest and stats snapshots carry their snapshot time (built from events strictly before).
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path
from typing import Literal

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.types import Array, Float32, Float64, Int64, String
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PField

from features import match_features as mf
from features.schema import CF_ITEM_VECTOR, CF_USER_VECTOR, ROW_TIME, sid_columns

SERVICE_BY_VARIANT = {"baseline": "ranking_baseline_v1", "match": "ranking_match_v1",
                      "match_sid": "ranking_match_sid_v1"}
"""The versioned FeatureServices, by the ranker variant that consumes each: a feature added to a service flows into
its variant. Every other place takes the names from here."""
SERVICES = tuple(SERVICE_BY_VARIANT.values())
FULL_SERVICE = SERVICE_BY_VARIANT["match_sid"]
"""The service whose features are a superset of the others' (one historical retrieval serves every variant)."""

TTL = timedelta(days=365 * 100)
"""Snapshots are emitted only when something changed, and MovieLens starts in 1996: never expire a value.
(Feast's first materialize_incremental also starts at now - ttl.)"""


class FeatureConfig(BaseModel):
    """The feature repository's config. Its shape parameters (D, L, P) come from upstream stages: the run config
    derives them (recsys.config), and every part of features/ reads them from here."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = PField(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$",
        description="Feast project = the online store's namespace (Redis keys, sqlite tables); None: the repository "
                    "draws its own on creation and keeps it in feature_config.json, so two repositories never "
                    "share a keyspace")
    embedding_dim: int = PField(256, ge=1, description="declared item-embedding dimension D (checked on write)")
    sid_levels: int = PField(3, ge=1, description="semantic-ID levels L: an item has sid_0..sid_{L-1}")
    prefix_dim: int = PField(64, ge=1, description="Matryoshka prefix length P of interest clusters and recent_prefix")
    offline_store: Literal["duckdb", "file", "spark"] = PField(
        "duckdb", description="Feast offline store: duckdb (default: point-in-time joins in DuckDB), file (dask) or "
                              "spark (spark_master)")
    spark_master: str = PField("local[2]", description="the Spark master of the spark offline store and batch engine")
    spark_conf: dict[str, str] = PField(default_factory=dict, description="Spark settings over recsys.spark's")
    batch_engine: Literal["local", "spark"] = PField(
        "local", description="materialization: features.online_write in this process (local) or Feast's Spark "
                             "compute engine on spark_master (spark)")
    online_store: Literal["sqlite", "redis"] = PField(
        "sqlite", description="sqlite (embedded default) or redis (production; needs feast[redis] and a server)")
    redis_connection: str = PField("127.0.0.1:6379", description="Feast redis connection_string")
    num_threads: int | None = PField(1, ge=1, description="DuckDB threads of point-in-time retrieval (None = every "
                                                          "usable core; recsys.runtime.resolve_threads)")
    cf_dim: int = PField(0, ge=0, description="width of the ID teacher's user and item vectors behind the "
                                              "collaborative score cf_score; 0 = no collaborative views")

    @model_validator(mode="after")
    def _prefix_within_embedding(self) -> FeatureConfig:
        if self.prefix_dim > self.embedding_dim:
            raise ValueError(f"prefix_dim={self.prefix_dim} exceeds embedding_dim={self.embedding_dim}: the prefix is "
                             "the first prefix_dim values of the embedding")
        return self


def build_definitions(paths: dict[str, str | Path], cfg: FeatureConfig | None = None) -> list:
    """All Feast objects of the repository, with sources at `paths[name]` for name in
    features.schema.source_names(cfg.cf_dim > 0).

    Paths are written into the registry as given: pass them relative to the repository directory (file store) so
    the registry survives a move; Spark reads relative paths against its working directory, so FeatureRepo gives
    it absolute ones and re-registers them when the directory moved."""
    cfg = cfg or FeatureConfig()
    sid_fields = sid_columns(cfg.sid_levels)
    shape_tags = {"embedding_dim": str(cfg.embedding_dim), "sid_levels": str(cfg.sid_levels),
                  "prefix_dim": str(cfg.prefix_dim)}
    count = {"default": "0"}  # Field tag read by features.serving: the value of a missing count

    # --- entities: the ids every feature is keyed by
    # A viewer; join key user_id (int64).
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="a viewer")
    # A piece of content; join key item_id (int64).
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="a content item")

    # --- sources: one parquet table per feature view, written by features.repo.FeatureRepo.write
    def source(name: str):
        path = str(paths[name])
        if cfg.offline_store == "spark":
            from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

            return SparkSource(name=f"{name}_source", path=path, file_format="parquet",
                               timestamp_field="event_timestamp")
        return FileSource(name=f"{name}_source", path=path, timestamp_field="event_timestamp")

    # --- feature views
    # Item content embedding and semantic IDs from the omni-modal embedding model (known from item creation).
    item_embedding = FeatureView(
        name="item_embedding",
        entities=[item],
        ttl=TTL,
        schema=[
            Field(name="embedding", dtype=Array(Float32),
                  description=f"L2-normalised item embedding, {cfg.embedding_dim} dims "
                              f"(first {cfg.prefix_dim} = prefix)"),
            *[Field(name=s, dtype=Int64, description=f"semantic ID level {s[4:]} (residual k-means code)",
                    tags={"default": "-1"}) for s in sid_fields],
            Field(name="model_version", dtype=String, description="embedding model that produced the vector"),
            Field(name=ROW_TIME, dtype=Int64, description="the row's own time, microseconds since the epoch "
                                                           "(retrieval reads the vector of the row Feast picks by it)"),
        ],
        online=True,
        source=source("item_embedding"),
        tags={"team": "recsys", **shape_tags},
    )
    # Daily snapshots of the user's positive-history interest profile (features.interests).
    user_interests = FeatureView(
        name="user_interests",
        entities=[user],
        ttl=TTL,
        schema=[
            Field(name="hist_len", dtype=Int64, description="positive items before the snapshot", tags=count),
            Field(name="mean_emb", dtype=Array(Float32), description="mean history embedding (unit)"),
            Field(name="recency_emb", dtype=Array(Float32), description="recency-weighted mean (unit)"),
            Field(name="last_emb", dtype=Array(Float32), description="last positive item's embedding"),
            Field(name="centroids", dtype=Array(Float32), description="K_max medoid embeddings, flattened"),
            Field(name="centroid_weights", dtype=Array(Float32), description="recency share per centroid"),
            Field(name="centroid_items", dtype=Array(Int64), description="medoid item ids (-1 = padding)"),
            Field(name="centroid_sids", dtype=Array(Int64),
                  description=f"medoid semantic IDs, K_max x {cfg.sid_levels}"),
            Field(name="n_centroids", dtype=Int64, description="number of interest clusters"),
            Field(name="recent_items", dtype=Array(Int64), description="last N positives, newest first"),
            Field(name="recent_prefix", dtype=Array(Float32),
                  description=f"their unit {cfg.prefix_dim}-d prefixes, N x {cfg.prefix_dim}"),
            Field(name="recent_sids", dtype=Array(Int64), description=f"their semantic IDs, N x {cfg.sid_levels}"),
            Field(name=ROW_TIME, dtype=Int64, description="the snapshot's own time, microseconds since the epoch "
                                                           "(retrieval reads the lists of the row Feast picks by it)"),
        ],
        online=True,
        source=source("user_interests"),
        tags={"team": "recsys", **shape_tags},
    )
    # Daily point-in-time engagement counts of each item (features.statistics).
    item_stats = FeatureView(
        name="item_stats",
        entities=[item],
        ttl=TTL,
        schema=[
            Field(name="item_impressions", dtype=Int64, description="impressions before the snapshot", tags=count),
            Field(name="item_positives", dtype=Int64, description="positive engagements before the snapshot",
                  tags=count),
            Field(name="item_positive_rate", dtype=Float32, description="positive rate smoothed to the prior"),
        ],
        online=True,
        source=source("item_stats"),
        tags={"team": "recsys"},
    )
    # Daily point-in-time engagement counts of each user (features.statistics).
    user_stats = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=TTL,
        schema=[
            Field(name="user_impressions", dtype=Int64, description="impressions before the snapshot", tags=count),
            Field(name="user_positives", dtype=Int64, description="positive engagements before the snapshot",
                  tags=count),
            Field(name="user_positive_rate", dtype=Float32, description="positive rate smoothed to the prior"),
        ],
        online=True,
        source=source("user_stats"),
        tags={"team": "recsys"},
    )

    # --- on-demand views: match features, computed per (user, candidate) at request time by the registry
    # functions of features.match_features (schema derived from the registry; the SID view's from L, whose
    # udf reads L off the sid_0..sid_{L-1} inputs declared here).
    def odfv(name: str, registry: dict, udf, item_inputs, user_inputs, item_view=item_embedding,
             user_view=user_interests) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name,
            sources=[item_view[list(item_inputs)], user_view[list(user_inputs)]],
            # no per-field description: Feast 0.67 compares declared Fields (description included) with the
            # ones it infers by running the udf, so a description makes `apply` fail. Docs live on the functions.
            schema=[Field(name=n, dtype=Float64) for n in registry],
            udf=udf,
            udf_string=inspect.getsource(udf),
            mode="pandas",
            description="user-interest x candidate match features (project definition, see match_features)",
            tags={"team": "recsys"},
        )

    # Embedding match: cosines to mean / recency / last / centroids, count of similar recent items.
    match_v1 = odfv("match_v1", mf.EMBEDDING_MATCH_FEATURES, mf.match_v1_udf, ["embedding"],
                    ["mean_emb", "recency_emb", "last_emb", "centroids", "centroid_weights", "recent_items",
                     "recent_prefix"])
    # Semantic-ID match: hierarchical SID prefix equality with recent items and the top interest medoid.
    sid_match_v1 = odfv("sid_match_v1", mf.sid_match_features(cfg.sid_levels), mf.sid_match_v1_udf, sid_fields,
                        ["recent_items", "recent_sids", "centroid_sids"])

    def cf_view(name: str, entity: Entity, column: str, what: str) -> FeatureView:
        return FeatureView(
            name=name,
            entities=[entity],
            ttl=TTL,
            schema=[Field(name=column, dtype=Array(Float32),
                          description=f"ID two-tower {what} vector, {cfg.cf_dim} dims (unit)"),
                    Field(name=ROW_TIME, dtype=Int64, description="the row's own time, microseconds since the epoch")],
            online=True,
            source=source(name),
            tags={"team": "recsys", "cf_dim": str(cfg.cf_dim)},
        )

    cf_views, cf_scores = [], []
    if cfg.cf_dim:
        # The ID teacher's user and item vectors (embedding.teachers, trained on the train period only), stamped
        # with the end of that period: what a production ranker's collaborative model knows.
        user_cf = cf_view("user_cf", user, CF_USER_VECTOR, "user")
        item_cf = cf_view("item_cf", item, CF_ITEM_VECTOR, "item")
        cf_views = [user_cf, item_cf]
        # Collaborative score: cosine of the user's and the candidate's ID vectors (NaN for an unknown id).
        cf_scores = [odfv("cf_v1", mf.COLLABORATIVE_FEATURES, mf.cf_v1_udf, [CF_ITEM_VECTOR], [CF_USER_VECTOR],
                          item_view=item_cf, user_view=user_cf)]

    # --- feature services: one per ranking model version, named by SERVICE_BY_VARIANT; every one carries the
    # collaborative score where the repository has it (the strongest baseline a match feature must beat)
    stats = [item_stats, user_stats, *cf_scores]
    services = [
        # Engagement statistics (+ the collaborative score) only: the baseline ranker.
        FeatureService(name=SERVICE_BY_VARIANT["baseline"], features=stats, tags={"team": "recsys"},
                       description="stats baseline"),
        # Statistics + embedding match features.
        FeatureService(name=SERVICE_BY_VARIANT["match"], features=[*stats, user_interests[["hist_len"]], match_v1],
                       tags={"team": "recsys"}, description="stats + embedding match"),
        # Statistics + embedding match + the candidate's semantic IDs and SID match features.
        FeatureService(name=SERVICE_BY_VARIANT["match_sid"],
                       features=[*stats, user_interests[["hist_len"]], match_v1, item_embedding[sid_fields],
                                 sid_match_v1],
                       tags={"team": "recsys"}, description="stats + embedding match + semantic IDs"),
    ]
    return [user, item, item_embedding, user_interests, item_stats, user_stats, *cf_views, match_v1, sid_match_v1,
            *cf_scores, *services]
