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
cache shards). `force` reruns named stages.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from recsys.config import RunConfig
from recsys.config_io import dump_model
from recsys.data.dataset import Dataset
from recsys.utils import seed_everything

log = logging.getLogger(__name__)

STAGES = ("data", "encode", "embedding", "teachers", "cre", "features", "ranking", "simulation")

VARIANT_SERVICES = {"baseline": "ranking_baseline_v1", "match": "ranking_match_v1",
                    "match_sid": "ranking_match_sid_v1"}
"""Ranker variants are the versioned Feast FeatureServices: a feature added to a service flows into its variant."""
ID_FEATURES = ("user_id", "item_id")


@dataclass
class RunContext:
    cfg: RunConfig
    run_dir: Path
    force: set[str] = field(default_factory=set)
    ds: Dataset | None = None
    encoded: object | None = None
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)

    @property
    def mlflow_uri(self) -> str:
        from ranking.experiment import mlflow_uri_for

        return mlflow_uri_for(self.run_dir)

    @property
    def experiment_name(self) -> str:
        return self.ds.manifest.name

    def marker(self, stage: str) -> Path:
        return self.run_dir / "stages" / f"{stage}.json"

    def done(self, stage: str) -> dict | None:
        p = self.marker(stage)
        if stage in self.force or not p.is_file():
            return None
        return json.loads(p.read_text())

    def finish(self, stage: str, payload: dict) -> dict:
        p = self.marker(stage)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(tmp, p)
        return payload


# ----------------------------------------------------------------------------------------------- stages
def stage_data(ctx: RunContext) -> dict:
    from recsys.data.prepare import prepare_dataset

    ctx.ds = prepare_dataset(ctx.cfg.data, ctx.run_dir / "dataset", world=ctx.cfg.world,
                             reuse="data" not in ctx.force)
    return {"summary": ctx.ds.summary()}


def stage_encode(ctx: RunContext) -> dict:
    from embedding.encoders import encode_items

    ctx.encoded = encode_items(ctx.ds, ctx.cfg.encoders, ctx.run_dir / "cache" / "encoders", ctx.cfg.device)
    info = ctx.encoded.info
    return {k: info.get(k) for k in ("dims", "encoded", "cached", "n_skipped") if k in info}


def _text_encoder(ctx: RunContext) -> Callable[[list[str]], object]:
    from embedding.encoders import encode_texts

    return lambda texts: encode_texts(texts, ctx.cfg.encoders, ctx.run_dir / "cache" / "encoders", ctx.cfg.device)


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
    t0 = time.perf_counter()
    emb = embed_items(model, ctx.encoded, ctx.cfg.embedding.train.infer_batch_size, ctx.cfg.device)
    infer_items_per_s = len(emb) / max(time.perf_counter() - t0, 1e-9)
    sid_model = ResidualKMeans.from_config(ctx.cfg.embedding.semantic_ids).fit(emb)
    sid_model.save(out / "semantic_ids.npz")
    version = f"omni-{tag}-{ctx.ds.manifest.content_hash[:8]}"
    path = write_item_embeddings(ctx.ds, ctx.encoded.item_ids, emb, sid_model.encode(emb), version,
                                 out / "item_embeddings.parquet")
    return {"item_embeddings": str(path), "model_version": version, "infer_items_per_s": infer_items_per_s,
            "semantic_ids": sid_model.stats(emb)}


def stage_teachers(ctx: RunContext) -> dict:
    """TorchRec ID two-tower and SASRec teachers on train-split positives (DistributedModelParallel)."""
    tc = ctx.cfg.teachers
    if not tc.enabled:
        return {"skipped": "teachers.enabled is false"}
    from recsys.teachers import train_id_teacher, train_sequence_teacher
    from recsys.teachers.config import TeacherConfig

    cfg = TeacherConfig(**tc.model_dump(exclude={"enabled"}))
    out = ctx.run_dir / "teachers"
    id_t = train_id_teacher(ctx.ds, cfg, out)
    seq_t = train_sequence_teacher(ctx.ds, cfg, out, id_teacher=id_t)
    return {"item_embeddings": {"id": str(id_t.out_dir / "item_embeddings.parquet"),
                                "sequence": str(seq_t.out_dir / "item_embeddings.parquet")},
            "metrics": {**id_t.metrics, **seq_t.metrics},
            "examples_per_sec": {"id": id_t.examples_per_sec, "sequence": seq_t.examples_per_sec}}


def stage_cre(ctx: RunContext) -> dict:
    """CRE: seq2item then ID2item distillation from the teachers, on top of the content model; metrics before
    and after (seq2item recall, i2i behaviour vs content pairs, NMI, teacher agreement, bijective alignment)."""
    cc = ctx.cfg.embedding.cre
    teachers = ctx.outputs.get("teachers", {}).get("item_embeddings")
    if not cc.enabled or not teachers:
        return {"skipped": "embedding.cre.enabled is false or no teachers"}
    from embedding.cre import CREConfig, run_cre

    tables = {name: pd.read_parquet(path) for name, path in teachers.items()}
    # the content stage's pair config: the auxiliary i2i loss and its evaluation share its held-out items
    cfg = CREConfig(**{**cc.model_dump(exclude={"enabled"}), "pairs": ctx.cfg.embedding.train.pairs.model_dump()})
    out = ctx.run_dir / "cre"
    result = run_cre(ctx.ds, ctx.encoded, ctx.outputs["embedding"]["model_dir"], tables, cfg, out, ctx.cfg.device)
    return {"model_dir": str(result.model_dir), "metrics": dict(result.metrics),
            "steps_per_sec": result.steps_per_sec, **_write_embeddings(ctx, result.model_dir, out, "cre")}


def embedding_sets(ctx: RunContext) -> dict[str, dict]:
    """name -> {item_embeddings, base_dir, suffix}. The primary set (CRE when it ran, else content) lives in the
    run directory's own feature repo; with CRE, the content-only set gets a second repo for the comparison."""
    cre = ctx.outputs.get("cre", {})
    if cre.get("item_embeddings"):
        return {"cre": {"item_embeddings": cre["item_embeddings"], "base_dir": ctx.run_dir, "suffix": ""},
                "content": {"item_embeddings": ctx.outputs["embedding"]["item_embeddings"],
                            "base_dir": ctx.run_dir / "content_only", "suffix": "_content"}}
    return {"content": {"item_embeddings": ctx.outputs["embedding"]["item_embeddings"], "base_dir": ctx.run_dir,
                        "suffix": ""}}


def _snapshot_range(ds: Dataset) -> tuple[pd.Timestamp, pd.Timestamp]:
    ts = ds.interactions["timestamp"]
    return ts.min().floor("D"), ts.max().floor("D") + pd.Timedelta(days=1)


def stage_features(ctx: RunContext) -> dict:
    """Interests + statistics (daily point-in-time snapshots) -> Feast sources -> apply -> materialize."""
    from features.definitions import FeatureConfig
    from features.repo import FeatureRepo, build_feature_tables

    start, end = _snapshot_range(ctx.ds)
    out = {"snapshot_start": start.isoformat(), "snapshot_end": end.isoformat(), "sets": {}}
    for name, spec in embedding_sets(ctx).items():
        item_emb = pd.read_parquet(spec["item_embeddings"])
        t0 = time.perf_counter()
        tables = build_feature_tables(ctx.ds, item_emb, start, end, ctx.cfg.features.interests,
                                      ctx.cfg.features.stats)
        build_s = time.perf_counter() - t0
        dim = len(item_emb["embedding"].iloc[0])
        fc = ctx.cfg.features
        repo = FeatureRepo(spec["base_dir"], FeatureConfig(
            embedding_dim=dim, offline_store=fc.offline_store, spark_master=fc.spark_master,
            online_store=fc.online_store, redis_connection=fc.redis_connection))
        repo.write(tables)
        repo.apply()
        out["sets"][name] = {"rows": {k: len(v) for k, v in tables.items()}, "build_seconds": build_s,
                             "materialize": repo.materialize(end), "repo": str(repo.run_dir)}
    return out


def _service_features(store) -> dict[str, list[str]]:
    from features.serving import service_layout

    return {variant: service_layout(store, svc)["order"] for variant, svc in VARIANT_SERVICES.items()}


def _set_columns(features: dict[str, list[str]], suffix: str) -> dict[str, str]:
    """Embedding-derived columns of a secondary set get a suffix so sets can share one frame."""
    base = set(features["baseline"])
    return {c: c + suffix for c in features["match_sid"] if c not in base and suffix}


def build_variants(ctx: RunContext, features_by_set: dict[str, dict[str, list[str]]]) -> dict:
    """Ranker variants from the FeatureServices of each embedding set (+ DLRM rows when configured)."""
    from ranking.experiment import VariantSpec

    sets = embedding_sets(ctx)
    variants: dict = {}
    for set_name, spec in sets.items():
        feats = features_by_set[set_name]
        rename = _set_columns(feats, spec["suffix"])
        for variant in ("baseline", "match", "match_sid"):
            if variant == "baseline" and spec["suffix"]:
                continue
            cols = [rename.get(c, c) for c in feats[variant]]
            cat = [*ID_FEATURES, *[rename.get(c, c) for c in feats[variant] if re.fullmatch(r"sid_\d+", c)]]
            variants[variant + spec["suffix"]] = VariantSpec((*ID_FEATURES, *cols), tuple(cat))
    if "dlrm" in ctx.cfg.ranking.rankers:
        for v in ("baseline", "match_sid"):
            base = variants[v]
            variants[f"dlrm_{v}"] = VariantSpec(base.features, base.categorical, ranker="dlrm")
    if "lgbm" not in ctx.cfg.ranking.rankers:
        variants = {k: v for k, v in variants.items() if v.ranker != "lgbm"}
    return variants


def _frames(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Point-in-time frames for valid (training) and test examples: one Feast retrieval per embedding set (valid
    and test together: the file store's cost is mostly per call, not per row)."""
    from features.repo import FeatureRepo
    from ranking.examples import labelled_examples

    rc = ctx.cfg.ranking
    examples = pd.concat([
        labelled_examples(ctx.ds, "valid", max_rows=rc.max_train_rows, seed=ctx.cfg.seed).assign(period="valid"),
        labelled_examples(ctx.ds, "test", max_rows=rc.max_test_rows, seed=ctx.cfg.seed).assign(period="test"),
    ], ignore_index=True)
    frame, features_by_set = examples.copy(), {}
    for set_name, spec in embedding_sets(ctx).items():
        repo = FeatureRepo(spec["base_dir"])
        feats = _service_features(repo.store)
        features_by_set[set_name] = feats
        rename = _set_columns(feats, spec["suffix"])
        got = repo.historical(examples, "ranking_match_sid_v1", engine=rc.retrieval_engine)
        for c in feats["match_sid"]:
            if c not in frame.columns or c in rename:
                frame[rename.get(c, c)] = got[c].to_numpy()
        for flag in ("unknown_user", "unknown_item"):
            frame[f"{flag}{spec['suffix']}"] = got[flag].to_numpy()
    split = {p: frame.loc[frame["period"] == p].drop(columns="period").reset_index(drop=True)
             for p in ("valid", "test")}
    return split["valid"], split["test"], features_by_set


def cold_item_rows(ds: Dataset, test: pd.DataFrame) -> np.ndarray:
    """Test rows whose item is first seen in the test period (no interaction before valid_end): bool [len(test)]."""
    valid_end = ds.split.valid_end
    seen = ds.interactions.loc[ds.interactions["timestamp"] < valid_end, "item_id"].unique()
    return ~test["item_id"].isin(seen).to_numpy()


def stage_ranking(ctx: RunContext) -> dict:
    """Point-in-time training frames from Feast -> LightGBM variants -> MLflow (AUC, GAUC, log loss + CIs)."""
    import mlflow

    from ranking.experiment import run_experiment

    rc = ctx.cfg.ranking
    t0 = time.perf_counter()
    train, test, features_by_set = _frames(ctx)
    frames_s = time.perf_counter() - t0
    variants = build_variants(ctx, features_by_set)
    (ctx.run_dir / "ranking").mkdir(parents=True, exist_ok=True)
    train.to_parquet(ctx.run_dir / "ranking" / "train_frame.parquet")
    test.to_parquet(ctx.run_dir / "ranking" / "test_frame.parquet")
    emb_metrics = {**ctx.outputs["embedding"]["metrics"],
                   **{f"cre.{k}": v for k, v in ctx.outputs.get("cre", {}).get("metrics", {}).items()},
                   **{f"teachers.{k}": v for k, v in ctx.outputs.get("teachers", {}).get("metrics", {}).items()}}
    # CRE variants are compared with their content-only twins on the same rows (paired bootstrap)
    comparisons = {v: f"{v}_content" for v in variants if f"{v}_content" in variants}
    result = run_experiment(train, test, variants, mlflow_uri=ctx.mlflow_uri, experiment_name=ctx.experiment_name,
                            run_tags={"dataset": ctx.ds.manifest.name, "content_hash": ctx.ds.manifest.content_hash},
                            config=rc.lgbm.model_copy(update={"seed": ctx.cfg.seed}), dlrm_config=rc.dlrm,
                            comparisons=comparisons, segments={"cold": cold_item_rows(ctx.ds, test)},
                            n_bootstrap=rc.bootstrap, seed=ctx.cfg.seed)
    mlflow.set_tracking_uri(ctx.mlflow_uri)
    with mlflow.start_run(run_id=result.parent_run_id):
        mlflow.log_metrics({f"embedding.{k.replace('@', '_at_')}": float(v) for k, v in emb_metrics.items()
                            if isinstance(v, (int, float)) and np.isfinite(v)})
    table = result.table
    table.to_csv(ctx.run_dir / "ranking" / "comparison.csv", index=False)
    return {"table": table.to_dict(orient="records"), "run_ids": result.run_ids, "model_uris": result.model_uris,
            "variants": {k: {"features": list(v.features), "categorical": list(v.categorical), "ranker": v.ranker}
                         for k, v in variants.items()},
            "features_by_set": features_by_set,
            "parent_run_id": result.parent_run_id, "n_train": len(train), "n_test": len(test),
            "frames_seconds": frames_s, "frames_rows_per_s": (len(train) + len(test)) / max(frames_s, 1e-9)}


def stage_simulation(ctx: RunContext) -> dict:
    """Replay the world's behaviour law with each ranker variant as the policy (synthetic world only)."""
    from features.inmemory import InMemoryFeatures
    from features.repo import FeatureRepo
    from features.serving import service_layout
    from ranking.experiment import load_logged_ranker, log_lifetime
    from ranking.policy import RankerPolicy
    from recsys.simulate import PopularityPolicy, RandomPolicy, SimulationConfig, simulate_lifetime
    from recsys.world import load_world

    sc = ctx.cfg.simulation
    if not sc.enabled or not (ctx.ds.root / "world").is_dir():
        return {"skipped": "no behaviour law for this dataset (lifetime needs the synthetic world)"}
    world = load_world(ctx.ds.root)
    rk = ctx.outputs["ranking"]
    builders = {}
    for set_name, spec in embedding_sets(ctx).items():
        layout = service_layout(FeatureRepo(spec["base_dir"]).store, "ranking_match_sid_v1")
        item_emb = pd.read_parquet(spec["item_embeddings"])
        builders[set_name] = (InMemoryFeatures(item_emb, ctx.ds.positive, layout, ctx.cfg.features.interests,
                                               ctx.cfg.features.stats),
                              _set_columns(rk["features_by_set"][set_name], spec["suffix"]))

    def feature_fn_for(set_name: str):
        builder, rename = builders[set_name]

        def feature_fn(day, user_ids, candidates, history):
            frame = builder.frame(world.timestamp(day).floor("D"), user_ids, candidates, history)
            return frame.rename(columns=rename)

        return feature_fn

    sets = embedding_sets(ctx)
    policies = {"random": RandomPolicy(seed=ctx.cfg.seed), "popularity": PopularityPolicy()}
    for variant, uri in rk["model_uris"].items():
        set_name = next((n for n, sp in sets.items() if sp["suffix"] and variant.endswith(sp["suffix"])),
                        next(n for n, sp in sets.items() if not sp["suffix"]))
        policies[variant] = RankerPolicy(load_logged_ranker(uri, ctx.mlflow_uri), feature_fn_for(set_name),
                                         name=variant)
    sim_cfg = SimulationConfig(**sc.model_dump(exclude={"enabled"}))
    summary = simulate_lifetime(world, policies, sim_cfg, history=ctx.ds.interactions, baseline="baseline")
    summary.to_csv(ctx.run_dir / "ranking" / "lifetime.csv")
    log_lifetime(ctx.mlflow_uri, ctx.experiment_name, rk["run_ids"], summary)
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
        from ranking.experiment import mlflow_uri_for

        return mlflow_uri_for(self.run_dir)

    def table(self) -> pd.DataFrame:
        """variant, AUC, GAUC, log loss (with CIs), LT7, LT14 (with CIs, where simulated)."""
        rows = pd.DataFrame(self.outputs["ranking"]["table"])
        keep = ["variant", "auc", "auc_lo", "auc_hi", "gauc", "gauc_lo", "gauc_hi", "logloss", "auc_diff_vs_baseline",
                "auc_diff_vs_baseline_lo", "auc_diff_vs_baseline_hi", "ref_variant", "auc_diff_vs_ref",
                "auc_diff_vs_ref_lo", "auc_diff_vs_ref_hi", "auc_cold", "auc_cold_lo", "auc_cold_hi", "n_cold"]
        table = rows[[c for c in keep if c in rows.columns]].copy()
        sim = self.outputs.get("simulation", {}).get("summary")
        if sim:
            lt = pd.DataFrame(sim).set_index("policy")
            for col in ("lt7", "lt7_lo", "lt7_hi", "lt14", "lt14_lo", "lt14_hi", "lt7_diff", "lt7_diff_lo",
                        "lt7_diff_hi"):
                if col in lt.columns:
                    table[col] = table["variant"].map(lt[col])
        return table


def run_pipeline(cfg: RunConfig, run_dir: str | Path, stages: list[str] | None = None,
                 force: set[str] | None = None, on_stage: Callable[[str, str], None] | None = None) -> RunResult:
    """Run (or resume) the main job. `stages` limits which stages run (prerequisites are loaded from their
    markers); `force` reruns finished stages."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_model(cfg, run_dir / "config.yaml")
    seed_everything(cfg.seed)
    ctx = RunContext(cfg, run_dir, set(force or ()))
    wanted = list(dict.fromkeys([*(stages or STAGES), *ctx.force]))
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    last = max(STAGES.index(s) for s in wanted)
    for stage in STAGES[: last + 1]:
        cached = ctx.done(stage)
        if cached is not None and stage not in ALWAYS_RUN:
            ctx.outputs[stage] = cached
            if on_stage:
                on_stage(stage, "cached")
            continue
        if stage not in wanted and stage not in ALWAYS_RUN:
            raise RuntimeError(f"stage '{stage}' has not run in {run_dir}; run it first")
        if on_stage:
            on_stage(stage, "start")
        if stage in ctx.force:
            _discard_training_state(run_dir, stage)
        t0 = time.perf_counter()
        payload = STAGE_FUNCS[stage](ctx)
        ctx.timings[stage] = time.perf_counter() - t0
        payload["seconds"] = ctx.timings[stage]
        # an always-run stage that had finished before only reloads its outputs: keep the first run's record
        ctx.outputs[stage] = cached if cached is not None else ctx.finish(stage, payload)
        if on_stage:
            on_stage(stage, f"done in {ctx.timings[stage]:.1f}s")
    result = RunResult(run_dir, ctx.outputs, ctx.timings)
    if "ranking" in ctx.outputs:
        write_report(result)
    return result


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
    table = result.table()
    lines = [f"# Results: {result.run_dir}", "", table.to_markdown(index=False, floatfmt=".4f"), "",
             f"MLflow: `mlflow ui --backend-store-uri {result.mlflow_uri}`"]
    path = result.run_dir / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path
