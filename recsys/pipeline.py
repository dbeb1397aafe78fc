"""The main job: data -> encoders -> embedding -> interests/features -> ranking -> lifetime, in one run directory.

    <run_dir>/
      config.yaml            the resolved config of the run
      dataset/               canonical dataset (prepared once, reused)
      cache/encoders/        modality-encoder feature cache (a second run encodes nothing)
      embedding/             checkpoints + final model (safetensors + config.json); item_embeddings.parquet
      feature_repo/          Feast repository: feature_store.yaml, sources, registry, sqlite online store
      mlflow.db, mlartifacts MLflow tracking (one experiment per dataset, a run per ranker variant)
      stages/<stage>.json    what each finished stage produced; a rerun skips finished stages
      results.md             the final table

Each stage is a function of the run context; a finished stage leaves stages/<name>.json and is skipped on the
next run (long stages also resume internally: embedding training from its last checkpoint, encoding from its
cache shards). `force` reruns named stages. Every stage runs under `seeded(cfg.seed)`, so its randomness does not
depend on which stages ran before it in the same process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ranking.embedding_sets import EmbeddingSet
from recsys.config import RunConfig
from recsys.config_io import dump_model
from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.fingerprints import changed_keys, fingerprint, stage_inputs
from recsys.io import atomic_file, write_json, write_parquet
from recsys.runtime import cpu_threads, seeded

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

PREDICTIONS = "test_predictions.parquet"
"""ranking/<this>: the test examples' keys and labels and one score column per variant."""
STAGES = ("data", "encode", "embedding", "teachers", "cre", "features", "ranking", "simulation")


@dataclass
class RunContext:
    cfg: RunConfig
    run_dir: Path
    force: set[str] = field(default_factory=set)
    """Stages to rebuild from scratch: named by --force, or whose fingerprint changed."""
    shared_dir: Path | None = None
    """Where the prepared dataset and the encoder cache live (a rolling-origin fold shares its parent's); None:
    the run directory."""
    ds: Dataset | None = None
    encoded: object | None = None
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def dataset_dir(self) -> Path:
        return (self.shared_dir or self.run_dir) / "dataset"

    @property
    def encoder_cache(self) -> Path:
        return (self.shared_dir or self.run_dir) / "cache" / "encoders"

    @property
    def experiment_name(self) -> str:
        return self.ds.manifest.name

    def marker(self, stage: str) -> Path:
        return self.run_dir / "stages" / f"{stage}.json"

    def recorded(self, stage: str) -> dict | None:
        p = self.marker(stage)
        return json.loads(p.read_text()) if p.is_file() else None

    def finish(self, stage: str, payload: dict) -> dict:
        write_json(self.marker(stage), payload)
        return payload


# ----------------------------------------------------------------------------------------------- stages
def stage_data(ctx: RunContext) -> dict:
    """Prepare (or reuse) the dataset, and check before any training that the ranking examples it yields have
    both classes in both periods (a single-class frame would only fail after the long stages)."""
    from ranking.examples import labelled_examples
    from recsys.data.dataset import fold_view
    from recsys.data.prepare import prepare_dataset
    from recsys.data.split import rolling_folds

    ctx.ds = prepare_dataset(ctx.cfg.data, ctx.dataset_dir, world=ctx.cfg.world,
                             reuse="data" not in ctx.force or ctx.shared_dir is not None)
    split = ctx.cfg.data.split
    if split.fold is not None:  # a rolling-origin fold: nothing at or after the end of its evaluation window
        fold = rolling_folds(ctx.ds.interactions["timestamp"], split.folds, split.test_fraction,
                             split.valid_fraction)[split.fold]
        ctx.ds = fold_view(ctx.ds, fold)
    rc = ctx.cfg.ranking
    for period, rows in (("valid", rc.max_train_rows), ("test", rc.max_test_rows)):
        labelled_examples(ctx.ds, period, max_rows=rows, seed=ctx.cfg.seed, negatives=rc.negatives)
    return {"summary": ctx.ds.summary()}


def stage_encode(ctx: RunContext) -> dict:
    from embedding.encoders import encode_items

    ctx.encoded = encode_items(ctx.ds, ctx.cfg.encoders, ctx.encoder_cache, ctx.cfg.device)
    info = ctx.encoded.info
    return {k: info.get(k) for k in ("dims", "encoded", "cached", "n_skipped") if k in info}


def _text_encoder(ctx: RunContext) -> Callable[[list[str]], object] | None:
    """Query and label texts go through the items' text encoder; without one (encoders.text.enabled false) the
    content stage trains and evaluates the item -> item pairs only."""
    from embedding.encoders import encode_texts

    if not ctx.cfg.encoders.text.enabled:
        return None
    return lambda texts: encode_texts(texts, ctx.cfg.encoders, ctx.encoder_cache, ctx.cfg.device)


def stage_embedding(ctx: RunContext) -> dict:
    """Contrastive content training (train split only), batch inference, semantic IDs, retrieval evaluation."""
    from embedding.train import train_embedding

    cfg = ctx.cfg.embedding
    out = ctx.run_dir / "embedding"
    result = train_embedding(ctx.ds, ctx.encoded, cfg.train, out, ctx.cfg.device, encode_texts=_text_encoder(ctx))
    return {"model_dir": str(result.model_dir), "metrics": dict(result.metrics),
            "train_steps_per_s": result.steps_per_sec, **_write_embeddings(ctx, result.model_dir, out, "content")}


def _write_embeddings(ctx: RunContext, model_dir: Path, out: Path, tag: str) -> dict:
    """Batch inference over every item (cold ones included: content alone), semantic IDs, the Feast source."""
    from embedding.infer import embed_items, write_item_embeddings
    from embedding.model import OmniEmbeddingModel
    from embedding.semantic_ids import ResidualKMeans

    model = OmniEmbeddingModel.from_pretrained(model_dir)
    encoded = ctx.encoded
    for modality in ctx.cfg.embedding.inference_without:  # "vec": every precomputed vector
        present = [m for m in encoded.modalities() if m == modality or m.startswith(f"{modality}_")]
        if not present:
            raise ConfigError(f"embedding.inference_without: no item has {modality!r} (the items have "
                              f"{encoded.modalities()})")
        for m in present:
            encoded = encoded.without(m)
    group = f"inference-{tag}"
    spark = _spark(ctx, group, f"item embeddings and semantic IDs of the {tag} model")
    batch_size = ctx.cfg.embedding.train.infer_batch_size
    t0 = time.perf_counter()
    if spark is None:
        emb = embed_items(model, encoded, batch_size, ctx.cfg.device)
    else:
        from embedding.spark_infer import spark_embed_items

        emb = spark_embed_items(spark, model_dir, encoded, out / "inference_shards", batch_size, ctx.cfg.device)
    infer_items_per_s = len(emb) / max(time.perf_counter() - t0, 1e-9)
    sid_model = ResidualKMeans.from_config(ctx.cfg.embedding.semantic_ids).fit(emb)
    sid_model.save(out / "semantic_ids.npz")
    if spark is None:
        sids = sid_model.encode(emb)
    else:
        from embedding.spark_infer import spark_semantic_ids

        sids = spark_semantic_ids(spark, sid_model, emb)
    version = f"omni-{tag}-{ctx.ds.manifest.content_hash[:8]}"
    path = write_item_embeddings(ctx.ds, ctx.encoded.item_ids, emb, sids, version, out / "item_embeddings.parquet")
    return {"item_embeddings": str(path), "model_version": version, "infer_items_per_s": infer_items_per_s,
            "semantic_ids": sid_model.stats(emb), **_spark_jobs(spark, group)}


def _spark(ctx: RunContext, group: str, description: str) -> SparkSession | None:
    """The run's Spark session with its next jobs grouped under `group` (engine: spark), or None (local)."""
    if ctx.cfg.engine != "spark":
        return None
    from recsys.spark import spark_session

    spark = spark_session(ctx.cfg.spark_master, conf=ctx.cfg.spark_conf)
    spark.sparkContext.setJobGroup(group, description)
    return spark


def _spark_jobs(spark: SparkSession | None, group: str) -> dict:
    """{"spark": {"master", "jobs"}}: the proof a stage's batch jobs ran there ({} when local)."""
    if spark is None:
        return {}
    jobs = spark.sparkContext.statusTracker().getJobIdsForGroup(group)
    return {"spark": {"master": spark.sparkContext.master, "jobs": len(jobs)}}


def stage_teachers(ctx: RunContext) -> dict:
    """TorchRec ID two-tower and SASRec teachers on train-split positives (DistributedModelParallel)."""
    tc = ctx.cfg.teachers
    if not tc.enabled:
        return {"skipped": "teachers.enabled is false"}
    from embedding.teachers import train_teachers
    from embedding.teachers.config import TeacherConfig

    results = train_teachers(ctx.ds, TeacherConfig(**tc.model_dump(exclude={"enabled"})), ctx.run_dir / "teachers")
    return {"item_embeddings": {kind: str(r.out_dir / "item_embeddings.parquet") for kind, r in results.items()},
            "metrics": {k: v for r in results.values() for k, v in r.metrics.items()},
            "examples_per_sec": {kind: r.examples_per_sec for kind, r in results.items()}}


def stage_cre(ctx: RunContext) -> dict:
    """CRE: seq2item then ID2item distillation from the teachers, on top of the content model; metrics before
    and after (seq2item recall, i2i behaviour vs content pairs, NMI, teacher agreement, bijective alignment)."""
    cc = ctx.cfg.embedding.cre
    teachers = ctx.outputs.get("teachers", {}).get("item_embeddings")
    if not cc.enabled or not teachers:
        return {"skipped": "embedding.cre.enabled is false or no teachers"}
    from embedding.cre import CREConfig, run_cre

    tables = {name: pd.read_parquet(path) for name, path in teachers.items()}
    cfg = CREConfig(**cc.model_dump(exclude={"enabled"}))  # pairs: the content stage's (derived by RunConfig)
    out = ctx.run_dir / "cre"
    result = run_cre(ctx.ds, ctx.encoded, ctx.outputs["embedding"]["model_dir"], tables, cfg, out, ctx.cfg.device)
    return {"model_dir": str(result.model_dir), "metrics": dict(result.metrics),
            "steps_per_sec": result.steps_per_sec, **_write_embeddings(ctx, result.model_dir, out, "cre")}


def embedding_sets(ctx: RunContext) -> list[EmbeddingSet]:
    """The item-embedding sets the features and rankers compare. The primary set (CRE when it ran, else content)
    lives in the run directory's own feature repo; with CRE, the content-only set gets a second repo."""
    content = Path(ctx.outputs["embedding"]["item_embeddings"])
    cre = ctx.outputs.get("cre", {}).get("item_embeddings")
    if cre:
        return [EmbeddingSet("cre", Path(cre), ctx.run_dir),
                EmbeddingSet("content", content, ctx.run_dir / "content_only", "_content")]
    return [EmbeddingSet("content", content, ctx.run_dir)]


def _snapshot_range(ds: Dataset) -> tuple[pd.Timestamp, pd.Timestamp]:
    ts = ds.interactions["timestamp"]
    return ts.min().floor("D"), ts.max().floor("D") + pd.Timedelta(days=1)


def stage_features(ctx: RunContext) -> dict:
    """Interests + statistics (daily point-in-time snapshots) -> Feast sources -> apply -> materialize."""
    from features.interests import interest_skips
    from features.repo import FeatureRepo
    from features.tables import build_feature_tables, collaborative_tables

    start, end = _snapshot_range(ctx.ds)
    fcfg = ctx.cfg.feature_config()
    out = {"snapshot_start": start.isoformat(), "snapshot_end": end.isoformat(), "sets": {}}
    for es in embedding_sets(ctx):
        item_emb = pd.read_parquet(es.item_embeddings)
        t0 = time.perf_counter()
        group = f"features-{es.name}"
        spark = _spark(ctx, group, f"feature tables of {es.name}")
        tables = build_feature_tables(ctx.ds, item_emb, start, end, fcfg, ctx.cfg.features.interests,
                                      ctx.cfg.features.stats, spark=spark, scratch_dir=es.repo_dir / "spark_scratch")
        if fcfg.cf_dim:
            tables.update(collaborative_tables(*_id_teacher_vectors(ctx)))
        build_s = time.perf_counter() - t0
        repo = FeatureRepo(es.repo_dir, fcfg)
        repo.write(tables)
        rows = {k: len(v) for k, v in tables.items()}
        del tables  # on disk now: the next set's tables are built without this set's in memory
        repo.apply()
        positives = ctx.ds.interactions.loc[ctx.ds.is_positive(ctx.ds.interactions)]
        out["sets"][es.name] = {"rows": rows, "build_seconds": build_s,
                                "interest_skips": interest_skips(positives, item_emb),
                                "materialize": repo.materialize(end), "repo": str(repo.run_dir),
                                **_spark_jobs(spark, group)}
    return out


def _id_teacher_vectors(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ID teacher's exported (user, item) vector tables: the collaborative score's inputs."""
    from embedding.teachers.export import USER_EMBEDDINGS

    items = ctx.outputs.get("teachers", {}).get("item_embeddings", {}).get("id")
    if items is None:
        raise ConfigError("features.collaborative needs the ID teacher (teachers.enabled: true); or set "
                          "features.collaborative: false")
    return pd.read_parquet(Path(items).with_name(USER_EMBEDDINGS)), pd.read_parquet(items)


def stage_ranking(ctx: RunContext) -> dict:
    """Point-in-time training frames from Feast -> ranker variants -> MLflow (AUC, GAUC, log loss + CIs)."""
    from ranking.experiment import run_experiment
    from ranking.frames import cold_item_rows, point_in_time_frames
    from ranking.plots import recipe_figures
    from ranking.tracking import log_figures, log_run_metrics, mlflow_uri_for
    from ranking.variants import (
        attribution_pairs,
        baseline_candidates,
        build_variants,
        ranker_baselines,
        twin_comparisons,
    )

    rc = ctx.cfg.ranking
    sets = embedding_sets(ctx)
    t0 = time.perf_counter()
    frames = point_in_time_frames(ctx.ds, sets, rc.max_train_rows, rc.max_test_rows, ctx.cfg.seed, rc.retrieval_engine,
                                  negatives=rc.negatives)
    frames_s = time.perf_counter() - t0
    frames.save(ctx.run_dir / "ranking")
    variants = build_variants(frames.features_by_set, sets, rc.rankers)
    mlflow_uri = mlflow_uri_for(ctx.run_dir)
    result = run_experiment(frames.train, frames.test, variants, mlflow_uri=mlflow_uri,
                            experiment_name=ctx.experiment_name,
                            run_tags={"dataset": ctx.ds.manifest.name, "content_hash": ctx.ds.manifest.content_hash},
                            ranker_configs={"lgbm": rc.lgbm, "dlrm": rc.dlrm},
                            baselines=baseline_candidates(variants), ranker_baselines=ranker_baselines(variants),
                            attribution=attribution_pairs(variants, sets), importance_repeats=rc.importance_repeats,
                            comparisons=twin_comparisons(variants, sets),
                            segments={"cold": cold_item_rows(ctx.ds, frames.test)}, n_bootstrap=rc.bootstrap,
                            seed=ctx.cfg.seed, params=frames.negatives_params(), run_key=_run_key(ctx, variants))
    emb_metrics = {**ctx.outputs["embedding"]["metrics"],
                   **{f"cre.{k}": v for k, v in ctx.outputs.get("cre", {}).get("metrics", {}).items()},
                   **{f"teachers.{k}": v for k, v in ctx.outputs.get("teachers", {}).get("metrics", {}).items()}}
    log_run_metrics(mlflow_uri, result.parent_run_id,
                    {f"embedding.{k.replace('@', '_at_')}": v for k, v in emb_metrics.items()})
    summary = Path(ctx.outputs["embedding"]["model_dir"]).parent / "train_summary.json"
    if summary.is_file():
        log_figures(mlflow_uri, result.parent_run_id, recipe_figures(json.loads(summary.read_text()).get("recipe", {})))
    for name, frame in (("comparison", result.table), ("attribution", result.attribution),
                        ("importance", result.importance)):
        with atomic_file(ctx.run_dir / "ranking" / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    write_parquet(ctx.run_dir / "ranking" / PREDICTIONS, result.predictions)  # the test scores: pooled folds
    n_train, n_test = len(frames.train), len(frames.test)
    return {"table": result.table.to_dict(orient="records"), "baseline": result.baseline,
            "attribution": result.attribution.to_dict(orient="records"),
            "importance": result.importance.to_dict(orient="records"), "run_ids": result.run_ids,
            "model_uris": result.model_uris,
            "variants": {k: {"features": list(v.features), "categorical": list(v.categorical), "ranker": v.ranker}
                         for k, v in variants.items()},
            "features_by_set": frames.features_by_set, "negatives": frames.negatives, "coverage": frames.coverage,
            "parent_run_id": result.parent_run_id, "n_train": n_train, "n_test": n_test,
            "frames_seconds": frames_s, "frames_rows_per_s": (n_train + n_test) / max(frames_s, 1e-9)}


def _run_key(ctx: RunContext, variants: dict) -> str:
    """MLflow runs are replaced per key: a rerun of the same stage inputs and variants (after a crash, or --force)
    replaces its runs; another config or another feature list (a new match feature) logs beside them."""
    spec = json.dumps({k: [list(v.features), list(v.categorical), v.ranker] for k, v in sorted(variants.items())})
    return f"ranking-{ctx.fingerprints['ranking']}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def stage_simulation(ctx: RunContext) -> dict:
    """Replay the world's behaviour law with each ranker variant as the policy (synthetic world only)."""
    from ranking.policy import lifetime_policies
    from ranking.simulate import SimulationConfig, simulate_lifetime
    from ranking.tracking import load_logged_ranker, log_lifetime, mlflow_uri_for
    from ranking.variants import attribution_only
    from recsys.world import load_world

    sc = ctx.cfg.simulation
    if not sc.enabled or not (ctx.ds.root / "world").is_dir():
        return {"skipped": "no behaviour law for this dataset (lifetime needs the synthetic world)"}
    world = load_world(ctx.ds.root)
    rk = ctx.outputs["ranking"]
    mlflow_uri = mlflow_uri_for(ctx.run_dir)
    sets = embedding_sets(ctx)
    skip = set(attribution_only(rk["variants"], sets))  # drop-group references: the ranking table has them
    rankers = {variant: load_logged_ranker(uri, mlflow_uri) for variant, uri in rk["model_uris"].items()
               if variant not in skip}
    policies = lifetime_policies(world, rankers, sets, rk["features_by_set"], ctx.ds.positive,
                                 ctx.cfg.features.interests, ctx.cfg.features.stats, seed=ctx.cfg.seed)
    summary = simulate_lifetime(world, policies, SimulationConfig(**sc.model_dump(exclude={"enabled"})),
                                history=ctx.ds.interactions, baseline=rk.get("baseline", "baseline"))
    with atomic_file(ctx.run_dir / "ranking" / "lifetime.csv") as tmp:
        summary.to_csv(tmp)
    log_lifetime(mlflow_uri, ctx.experiment_name, {v: r for v, r in rk["run_ids"].items() if v not in skip}, summary)
    return {"summary": summary.reset_index().to_dict(orient="records")}


STAGE_FUNCS: dict[str, Callable[[RunContext], dict]] = {
    "data": stage_data, "encode": stage_encode, "embedding": stage_embedding, "teachers": stage_teachers,
    "cre": stage_cre, "features": stage_features,
    "ranking": stage_ranking, "simulation": stage_simulation,
}
ALWAYS_RUN = {"data", "encode"}  # cheap when done (dataset reused, encoder cache hit) and needed in memory


# ----------------------------------------------------------------------------------------------- driver
@dataclass
class RunResult:
    run_dir: Path
    outputs: dict[str, dict]
    timings: dict[str, float]

    @property
    def mlflow_uri(self) -> str:
        from ranking.tracking import mlflow_uri_for

        return mlflow_uri_for(self.run_dir)

    def table(self) -> pd.DataFrame:
        """variant, AUC, GAUC, log loss (with CIs), LT7, LT14 (with CIs, where simulated)."""
        from ranking.report import results_table

        return results_table(self.outputs["ranking"]["table"], self.outputs.get("simulation", {}).get("summary"))


def run_pipeline(cfg: RunConfig, run_dir: str | Path, stages: list[str] | None = None,
                 force: set[str] | None = None, on_stage: Callable[[str, str], None] | None = None,
                 shared_dir: Path | None = None) -> RunResult:
    """Run (or resume) the main job up to the latest of `stages` (default: all).

    A stage is reused when its marker's fingerprint equals the current one (same config sections, seed, device
    and upstream artefacts); a stage whose fingerprint changed reruns from scratch, and so does everything
    downstream. Markers of later stages that no longer match are set aside (`stages/<stage>.stale.json`), so
    `config.yaml` always describes the artefacts beside it. `force` rebuilds the named stages regardless.
    shared_dir: where the dataset and the encoder cache are (recsys.rolling: every fold shares its parent's)."""
    run_dir = Path(run_dir)
    targets = list(dict.fromkeys([*(stages or STAGES), *(force or ())]))
    unknown = [s for s in targets if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg, run_dir, set(force or ()), shared_dir)
    dump_model(cfg, run_dir / "config.yaml")
    last = max(STAGES.index(s) for s in targets)
    fps = ctx.fingerprints
    for stage in STAGES:
        inputs = stage_inputs(cfg, stage, fps, ctx.ds.manifest.content_hash if ctx.ds is not None else None)
        fps[stage] = fingerprint(inputs)
        record = ctx.recorded(stage)
        stale = record is not None and record.get("fingerprint") != fps[stage]
        if STAGES.index(stage) > last:
            if stale:
                _set_aside(run_dir, stage)
            continue
        if stale:
            ctx.force.add(stage)
            if on_stage:
                on_stage(stage, f"inputs changed ({changed_keys(record.get('fingerprint_inputs'), inputs)}): rerun")
        reusable = record is not None and stage not in ctx.force
        if reusable and stage not in ALWAYS_RUN:
            ctx.outputs[stage] = record
            if on_stage:
                on_stage(stage, "cached")
            continue
        if on_stage:
            on_stage(stage, "start")
        if stage in ctx.force:
            _discard_training_state(run_dir, stage)
        t0 = time.perf_counter()
        with seeded(cfg.seed), cpu_threads(cfg.num_threads):
            payload = STAGE_FUNCS[stage](ctx)
        ctx.timings[stage] = time.perf_counter() - t0
        payload.update(seconds=ctx.timings[stage], fingerprint=fps[stage], fingerprint_inputs=inputs)
        # an always-run stage that had finished before only reloads its outputs: keep the first run's record
        ctx.outputs[stage] = record if reusable else ctx.finish(stage, payload)
        if on_stage:
            on_stage(stage, f"done in {ctx.timings[stage]:.1f}s")
    result = RunResult(run_dir, ctx.outputs, ctx.timings)
    if "ranking" in ctx.outputs:
        write_report(result)
    return result


def _set_aside(run_dir: Path, stage: str) -> None:
    """A later stage's marker (and the report built from it) no longer matches the config: keep it, renamed."""
    marker = run_dir / "stages" / f"{stage}.json"
    os.replace(marker, marker.with_suffix(".stale.json"))
    log.warning("stage %s was built from other settings: its marker is now %s", stage,
                marker.with_suffix(".stale.json"))
    if stage == "ranking" and (run_dir / "results.md").is_file():
        os.replace(run_dir / "results.md", run_dir / "results.stale.md")


TRAINING_STATE = {"embedding": ("embedding/checkpoint",), "cre": ("cre/checkpoint", "cre/cre_summary.json")}
"""What a forced stage discards so that it trains from scratch (a checkpoint of another config would refuse)."""


def _discard_training_state(run_dir: Path, stage: str) -> None:
    import shutil

    for rel in TRAINING_STATE.get(stage, ()):
        path = run_dir / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()


def write_report(result: RunResult) -> Path:
    from ranking.report import write_results

    out = result.outputs
    return write_results(result.run_dir / "results.md", str(result.run_dir), result.mlflow_uri, out["ranking"],
                         embedding_metrics=out.get("embedding", {}).get("metrics"),
                         cre_metrics=out.get("cre", {}).get("metrics"),
                         lifetime=out.get("simulation", {}).get("summary"),
                         lifetime_skipped=out.get("simulation", {}).get("skipped"))
