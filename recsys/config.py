"""The run config: one typed section per stage, composed from the configs that live beside each stage.

Load with `recsys.config_io.load_model(RunConfig, path, overrides)`; an unknown key or bad value is an error
that names the key (e.g. `embedding.train.batch_size: Input should be greater than 1`).

Cross-stage parameters have one source each; the validator below derives what other stages need from it and
refuses settings that contradict it, naming both keys:

| parameter                | source key                                   | derived into                              |
|--------------------------|----------------------------------------------|-------------------------------------------|
| embedding dimension      | embedding.train.model.embed_dim              | the Feast schema (FeatureConfig)          |
| Matryoshka prefix        | features.interests.prefix_dim (one of        | interests, match features (FeatureConfig) |
|                          | embedding.train.model.matryoshka_dims)       |                                           |
| semantic-ID levels       | embedding.semantic_ids.levels                | Feast schema, SID match features          |
| held-out pair split      | embedding.train.pairs                        | embedding.cre.pairs                       |
| seed, device             | seed, device                                 | every stage's seed/device the user left   |
| FeatureService names     | features.definitions.SERVICE_BY_VARIANT      | ranker variants                           |
| batch engine, Spark      | engine, spark_master, spark_conf             | embedding inference, features, Feast      |
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from embedding.cre import CREConfig
from embedding.encoders.config import EncoderConfig
from embedding.semantic_ids import SemanticIdConfig
from embedding.teachers.config import TeacherConfig
from embedding.train import EmbeddingTrainConfig
from features.definitions import FeatureConfig
from features.interests import InterestConfig
from features.statistics import StatsConfig
from ranking.dlrm import DLRMConfig
from ranking.lgbm import LGBMConfig
from ranking.negatives import NegativeSamplingConfig
from ranking.simulate import SimulationConfig
from recsys.data.config import DataConfig
from recsys.runtime import Precision
from recsys.world.config import WorldConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CRESection(CREConfig):
    """Collaboration-aware recommendation enhancement (seq2item, then ID2item from the TorchRec teachers)."""

    enabled: bool = True


class EmbeddingSection(_Section):
    """The omni-modal embedding model: contrastive content training, then CRE."""

    train: EmbeddingTrainConfig = Field(default_factory=EmbeddingTrainConfig)
    cre: CRESection = Field(default_factory=CRESection)
    semantic_ids: SemanticIdConfig = Field(default_factory=SemanticIdConfig)
    inference_without: list[Literal["text", "image", "audio", "vec"]] = Field(
        default_factory=list, description="modalities missing for every item when the content and CRE models "
        "embed the catalogue for the features (training unaffected): what a missing input costs the rankers")


class TeachersSection(TeacherConfig):
    """TorchRec ID two-tower and SASRec sequence teachers (train split only); needed by CRE."""

    enabled: bool = True


class FeaturesSection(_Section):
    """The Feast repository generated under <run_dir>/feature_repo."""

    offline_store: Literal["duckdb", "file", "spark"] = Field(
        "duckdb", description="duckdb (point-in-time joins in DuckDB over the parquet sources), file (parquet via "
                              "dask: slower) or spark (a session on spark_master)")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"
    collaborative: bool = Field(True, description="register the ID teacher's user and item vectors and give every "
                                "ranker the collaborative score cf_score (the baseline a match feature must beat); "
                                "needs teachers.enabled")
    interests: InterestConfig = Field(default_factory=InterestConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)


class RankingSection(_Section):
    """Rankers compared on the test period; trained on valid-period examples."""

    lgbm: LGBMConfig = Field(default_factory=LGBMConfig)
    dlrm: DLRMConfig = Field(default_factory=DLRMConfig)
    rankers: list[Literal["lgbm", "dlrm"]] = Field(default_factory=lambda: ["lgbm", "dlrm"],
                                                   description="dlrm adds TorchRec DLRM rows (baseline, match_sid)")
    max_train_rows: int | None = Field(None, ge=100, description="sample whole users down to about this many")
    max_test_rows: int | None = Field(None, ge=100)
    bootstrap: int = Field(200, ge=10, description="bootstrap resamples (users) for confidence intervals")
    importance_repeats: int = Field(3, ge=0, description="shuffles per feature of the test-period permutation "
                                                         "importance of each variant's added features; 0 = off")
    negatives: NegativeSamplingConfig = Field(
        default_factory=NegativeSamplingConfig,
        description="implicit-feedback datasets only: how negatives are sampled for the examples")
    retrieval_engine: Literal["feast", "asof"] = Field(
        "feast", description="feast: get_historical_features; asof: the same point-in-time join in pandas "
                             "(tested equal, ~10x faster on large frames)")


class SimulationSection(SimulationConfig):
    """Lifetime simulation; runs only where the dataset has a behaviour law (the synthetic world)."""

    enabled: bool = True


class RunConfig(_Section):
    """Everything `recsys run` needs. Defaults are the embedded demo."""

    seed: int = Field(0, ge=0, lt=2**32, description="the run seed; every stage's seed unless set there")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                        description="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps")
    num_threads: int | None = Field(
        1, ge=1, description="CPU threads of each compute pool (torch, BLAS/OpenMP, LightGBM, DuckDB) in every stage "
                             "that does not set its own; None = every core this process may use (recsys.runtime)")
    precision: Precision = Field(
        "auto", description="training forward precision of every stage that does not set its own: auto (bf16 "
                            "autocast where the hardware multiplies bf16 natively, else fp32), fp32 or bf16")
    engine: Literal["local", "spark"] = Field(
        "local", description="where the batch jobs run: in this process (local), or as Spark jobs on spark_master "
                             "(embedding inference and semantic IDs, interest mining, point-in-time statistics, "
                             "materialization through Feast's Spark engine). The outputs are the same (tested), so "
                             "the engine is in no stage's fingerprint")
    spark_master: str = Field("local[2]", description="the Spark master of every Spark job and of the Spark offline "
                              "store: local[N] on one machine, a cluster URL (spark://host:7077, yarn, k8s://...)")
    spark_conf: dict[str, str] = Field(
        default_factory=dict, description="Spark settings of the session every Spark job runs in, over "
        "recsys.spark.DEFAULT_CONF (e.g. spark.driver.memory, spark.executor.memory, spark.executor.instances)")
    data: DataConfig = Field(default_factory=DataConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    encoders: EncoderConfig = Field(default_factory=EncoderConfig)
    embedding: EmbeddingSection = Field(default_factory=EmbeddingSection)
    teachers: TeachersSection = Field(default_factory=TeachersSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    ranking: RankingSection = Field(default_factory=RankingSection)
    simulation: SimulationSection = Field(default_factory=SimulationSection)

    @model_validator(mode="after")
    def _device_exists(self) -> RunConfig:
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but no CUDA device is available here (use auto or cpu)")
        if self.device.startswith("cuda:") and int(self.device[5:]) >= torch.cuda.device_count():
            raise ValueError(f"device={self.device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return self

    @model_validator(mode="after")
    def _collaborative_needs_the_teachers(self) -> RunConfig:
        if self.features.collaborative and not self.teachers.enabled:
            raise ValueError("features.collaborative: true needs the ID teacher (teachers.enabled: true); set "
                             "features.collaborative: false to run without the collaborative score")
        return self

    @model_validator(mode="after")
    def _derive_cross_stage_parameters(self) -> RunConfig:
        model = self.embedding.train.model
        prefix = self.features.interests.prefix_dim
        if prefix not in model.all_dims:
            raise ValueError(
                f"features.interests.prefix_dim={prefix} must be one of the embedding's trained prefixes: "
                f"embedding.train.model.matryoshka_dims={model.matryoshka_dims} or "
                f"embedding.train.model.embed_dim={model.embed_dim}")
        cre = self.embedding.cre
        if "pairs" in cre.model_fields_set and cre.pairs != self.embedding.train.pairs:
            raise ValueError("embedding.cre.pairs must equal embedding.train.pairs (CRE evaluates on the content "
                             "stage's held-out pairs); set embedding.train.pairs only")
        object.__setattr__(cre, "pairs", self.embedding.train.pairs.model_copy())
        return self

    def feature_config(self) -> FeatureConfig:
        """The Feast repository's config, derived from the embedding and features sections."""
        fc = self.features
        return FeatureConfig(embedding_dim=self.embedding.train.model.embed_dim,
                             sid_levels=self.embedding.semantic_ids.levels, prefix_dim=fc.interests.prefix_dim,
                             offline_store=fc.offline_store, spark_master=self.spark_master,
                             spark_conf=self.spark_conf, batch_engine=self.engine,
                             online_store=fc.online_store, redis_connection=fc.redis_connection,
                             num_threads=self.num_threads,
                             cf_dim=self.teachers.two_tower.dim if fc.collaborative else 0)

    @model_validator(mode="after")
    def _propagate_seed_and_device(self) -> RunConfig:
        """The run's seed, device, num_threads and precision reach every stage config that did not set its own."""

        def visit(model: BaseModel) -> None:
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, BaseModel):
                    visit(value)
            if model is self:
                return
            if "seed" in type(model).model_fields and "seed" not in model.model_fields_set:
                object.__setattr__(model, "seed", self.seed)
            if "device" in type(model).model_fields and "device" not in model.model_fields_set:
                object.__setattr__(model, "device", self.device)
            if "num_threads" in type(model).model_fields and "num_threads" not in model.model_fields_set:
                object.__setattr__(model, "num_threads", self.num_threads)
            if "precision" in type(model).model_fields and "precision" not in model.model_fields_set:
                object.__setattr__(model, "precision", self.precision)

        visit(self)
        return self
