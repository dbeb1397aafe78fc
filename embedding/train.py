"""Contrastive training of the omni-modal embedding model, readable top to bottom (nanoGPT style).

    train_embedding(ds, encoded, cfg, out_dir, device, encode_texts)      # builds pairs, encodes texts
      -> train_on_pairs(encoded, pair_sets, texts, text_index, cfg, ...)  # the loop below
      -> TrainResult(model_dir, metrics, steps_per_sec)

Recipe (SAIL §3.3, scaled down): InfoNCE with in-batch negatives and one learnable temperature per dataset,
wrapped in a Matryoshka loss over the prefixes [64, 128, 256]; in-batch targets that are known training positives
of a query (an item's other labels, a query's other items, i2i neighbours) are masked, not negatives; the model's
residual text map stays fixed (`residual_lr_scale` 0: training only adds to the text baseline the model starts
from, see embedding.model); every batch is drawn from ONE dataset
(stochastic specialization, §3.3.3) with probabilities from the stage's weights or the `sampling` strategy;
`stages` run in order (progressive training, §3.3.1: e.g. broad -> aligned -> hard negatives later).
AdamW, linear warmup + cosine decay over all stages (embedding.schedule), gradient clipping, periodic
evaluation on held-out pairs, atomic checkpoints every `checkpoint_every` steps (recsys.checkpoint) and exact
resume from the last one (batches, dropout and field dropout of step s depend only on (seed, s), so an
interrupted + resumed run equals an uninterrupted one).

Layout of out_dir:
    checkpoint/  model.safetensors, config.json, state.pt (optimizer, schedule, temperatures, step, history),
                 meta.json (train config + input fingerprint)
    model/       the final model (save_pretrained)
    train_summary.json   metrics (model, baseline/..., vs_baseline/... paired intervals), steps/s, pair counts
    retrieval_queries.parquet   the model's per-query recall on every pair set's held-out pairs (embedding.evaluate)
    retrieval_queries_text_only.parquet   the text-only baseline's, on the same queries

Every pair set is evaluated; only those in `tasks` are trained on (an ablated dataset is still measured).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from embedding.balancing import BalanceConfig
from embedding.batches import Batch, collate, collate_texts
from embedding.encoders.types import EncodedItems, TextTokens
from embedding.evaluate import (
    BASELINE_QUERIES,
    RETRIEVAL_QUERIES,
    ModelEmbedder,
    VectorEmbedder,
    compare_query_tables,
    evaluators_from_pairs,
    graded_evaluators,
    run_evaluators,
    summarize,
)
from embedding.fingerprint import encoder_signature, input_fingerprint
from embedding.guards import content_presence, warn_if_at_chance
from embedding.infer import pool_text_tokens
from embedding.losses import CoSENTLoss, InfoNCELoss, MatryoshkaLoss
from embedding.model import OmniEmbeddingModel
from embedding.model_config import OmniEmbeddingConfig
from embedding.patterns import (
    Pattern,
    PatternSides,
    embed_patterns,
    graded_loss,
    micl_patterns,
    parse_patterns,
    pattern_key,
    pattern_loss,
)
from embedding.recipe import MiningConfig, RecipeState, balanced_stage_weights, mine_pair_set, plain_columns
from embedding.schedule import warmup_cosine_schedule
from embedding.tasks import (
    BUILDERS,
    PairConfig,
    PairSet,
    SamplingStrategy,
    build_pair_sets,
    build_validation_pairs,
    dataset_weights,
)
from recsys.checkpoint import load_checkpoint, save_checkpoint
from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError
from recsys.io import atomic_directory, write_json, write_parquet
from recsys.runtime import (
    Precision,
    autocast,
    cpu_threads,
    deterministic_kernels,
    resolve_device,
    resolve_precision,
    seeded,
)

log = logging.getLogger(__name__)

EncodeTexts = Callable[[list[str]], TextTokens]
# settings that change how a run is observed or how fast it runs, not what it computes: a checkpoint written
# with other values of these is still resumed
_RESUME_IGNORES = {"eval_every", "eval_max_queries", "eval_missing_modalities", "checkpoint_every", "log_every",
                   "num_threads", "infer_batch_size"}


class StageConfig(BaseModel):
    """One training stage: which datasets, with which weights, for how many steps, and what the content recipe
    computes at its start with the model as it is then (SAIL §3.3.1)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "content"
    steps: int = Field(300, gt=0)
    tasks: dict[str, float] = Field(default_factory=dict, description="dataset -> weight; empty = all built "
                                                                       "datasets weighted by `sampling`")
    balanced: bool = Field(False, description="weights from adaptive data balancing (embedding.balancing), "
                                              "computed once, at the start of the first balanced stage")
    hard_negatives: int = Field(0, ge=0, description="k hard negatives per query (embedding.hard_negatives), "
                                                     "mined at this stage's start; 0 = in-batch negatives only")


def progressive_stages() -> list[StageConfig]:
    """SAIL's progressive recipe (`stages: progressive`): broad (every dataset by `sampling`) -> aligned
    (balanced weights) -> hard negatives; 300 steps in all, like the single default stage."""
    return [StageConfig(name="broad", steps=120), StageConfig(name="aligned", steps=90, balanced=True),
            StageConfig(name="hard_negatives", steps=90, balanced=True, hard_negatives=1)]


class EmbeddingTrainConfig(BaseModel):
    """Defaults fit the demo budget: 300 steps of batch 64 at hidden 128, ~2 min on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")

    model: OmniEmbeddingConfig = Field(default_factory=OmniEmbeddingConfig)
    pairs: PairConfig = Field(default_factory=PairConfig)
    tasks: list[str] = Field(default_factory=lambda: ["i2i", "q2i", "label"], description="pair builders to run")
    stages: list[StageConfig] = Field(default_factory=lambda: [StageConfig()], description="the stages in order, "
                                      "or `progressive` for SAIL's recipe (progressive_stages)")
    progressive: bool = Field(True, description="False = all-in-one: the stages' steps in one stage on every "
                                                "dataset by `sampling`, no balancing, no hard negatives")
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    patterns: dict[str, list[str]] = Field(default_factory=dict, description="dataset -> modality patterns "
                                           "(embedding.patterns, e.g. i2i: [omni->omni, image->text*0.5]); a "
                                           "dataset not named is scored omni->omni only")
    micl_weight: float = Field(0.0, ge=0, description="alpha of mICL: text->text, image->image, audio->audio "
                                                      "patterns added to every item->item dataset (0 = off)")
    mining: MiningConfig = Field(default_factory=MiningConfig)
    sampling: SamplingStrategy = "sqrt"
    batch_size: int = Field(64, gt=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    min_lr: float = Field(1e-4, ge=0, description="end of the cosine decay")
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    residual_lr_scale: float = Field(0.0, ge=0, description="learning-rate multiplier of the model's residual "
                                                             "input maps (model.text_residual)")
    mask_known_positives: bool = Field(True, description="in-batch targets that are known training positives "
                                                          "of a query (multi-label items, multi-item queries, "
                                                          "i2i neighbours) are not its negatives")
    temperature: float = Field(0.05, gt=0, description="initial InfoNCE temperature of every dataset")
    cosent_weight: float = Field(1.0, gt=0, description="lambda: weight of CoSENT on the batches of a graded dataset")
    temperatures: dict[str, float] = Field(default_factory=dict, description="per-dataset initial temperature")
    learnable_temperature: bool = True
    symmetric: bool = Field(True, description="InfoNCE in both directions (query->target and back)")
    matryoshka_weights: list[float] | None = Field(None, description="one per dim in model.all_dims; None = 1 each")
    eval_every: int = Field(0, ge=0, description="evaluate on held-out pairs every N steps (0 = only at the end)")
    eval_max_queries: int = Field(500, gt=0)
    eval_missing_modalities: bool = Field(False, description="also evaluate with each modality missing for every "
                                          "item at inference (without_<m>/..., paired against the full input)")
    checkpoint_every: int = Field(100, gt=0)
    log_every: int = Field(25, gt=0)
    seed: int = 0
    num_threads: int | None = Field(1, ge=1, description="torch CPU threads while training (None = every core "
                                    "this process may use). 1 (default) is bitwise reproducible run to run; with "
                                    "more threads float reductions can differ between runs")
    infer_batch_size: int = Field(128, gt=0, description="items per inference batch (benchmarks/fusion_inference.py)")
    precision: Precision = Field("auto", description="training forward precision (recsys.runtime): auto = bf16 "
                                 "autocast where the hardware has native bf16, else fp32; weights, outputs stay fp32")

    @field_validator("stages", mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value != "progressive":
                raise ValueError(f"stages: unknown preset {value!r} (write a list of stages, or 'progressive')")
            return progressive_stages()
        return value

    @model_validator(mode="after")
    def _check(self) -> EmbeddingTrainConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} exceeds lr={self.lr} (the cosine decays from lr to min_lr)")
        if unknown := sorted(set(self.tasks) - set(BUILDERS)):
            raise ValueError(f"tasks {unknown} unknown; the pair builders are {sorted(BUILDERS)}")
        if unknown := sorted(set(self.patterns) - set(BUILDERS)):
            raise ValueError(f"patterns name datasets {unknown}; the pair builders are {sorted(BUILDERS)}")
        for spec in (spec for specs in self.patterns.values() for spec in specs):
            Pattern.parse(spec)  # a malformed pattern fails here, with the config
        if not self.tasks:
            raise ValueError("tasks is empty: name at least one pair builder")
        return self

    def patterns_of(self, dataset: str, query_kind: str, target_kind: str, graded: bool = False) -> list[str]:
        """The dataset's declared patterns (omni->omni when none), plus mICL's on item->item datasets."""
        specs = list(self.patterns.get(dataset, [])) or ["omni->omni"]
        if self.micl_weight > 0 and query_kind == target_kind == "item" and not graded:
            specs += [m for m in micl_patterns(self.micl_weight) if m.split("*")[0] not in
                      {s.split("*")[0].replace(" ", "") for s in specs}]
        return specs

    @property
    def run_stages(self) -> list[StageConfig]:
        """The stages trained: `stages`, or one all-in-one stage of their total steps when not progressive."""
        if self.progressive:
            return self.stages
        return [StageConfig(name="all_in_one", steps=sum(s.steps for s in self.stages))]

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.run_stages)

    def resume_meta(self) -> dict:
        """The settings a checkpoint must have been written with to be resumed (recsys.checkpoint meta)."""
        return {k: v for k, v in self.model_dump().items() if k not in _RESUME_IGNORES}


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]
    steps_per_sec: float
    pair_info: dict = field(default_factory=dict)


# ---- entry point from a dataset -------------------------------------------------------------------------
def train_embedding(ds: Dataset, encoded: EncodedItems, cfg: EmbeddingTrainConfig, out_dir: str | Path,
                    device: str = "auto", encode_texts: EncodeTexts | None = None,
                    on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Build pairs from the TRAIN split, encode their texts with `encode_texts` (queries, label texts: a
    callable list[str] -> TextTokens, e.g. `lambda t: encoders.encode_texts(t, enc_cfg, cache, device)`),
    then train. Without `encode_texts`, text-side tasks (q2i, label) are skipped."""
    # evaluated on every contrastive pair set, trained on cfg.tasks: an ablated dataset is still scored (the graded
    # pairs only when trained: their Spearman is no per-query table an ablation pairs)
    tasks = [t for t in BUILDERS if t != "graded" or t in cfg.tasks]
    if encode_texts is None and any(t != "i2i" for t in tasks):
        log.warning("no encode_texts callable: i2i only (skipping %s)", [t for t in tasks if t != "i2i"])
        tasks = [t for t in tasks if t == "i2i"]
    built = {k: ps.restrict_items(encoded.item_ids) for k, ps in build_pair_sets(ds, cfg.pairs, tasks).items()}
    eval_sets = {k: ps for k, ps in built.items() if len(ps.train) >= 2}
    pair_sets = {k: ps for k, ps in eval_sets.items() if k in cfg.tasks}
    if skipped := sorted(set(cfg.tasks) - set(pair_sets)):
        log.warning("embedding training: no pairs for %s (skipped)", skipped)
    texts = sorted({t for ps in eval_sets.values() for t in ps.texts()})
    text_tokens = encode_texts(texts) if texts else None
    if text_tokens is not None and len(text_tokens) != len(texts):
        raise ValueError(f"encode_texts returned {len(text_tokens)} rows for {len(texts)} texts")
    text_index = {t: i for i, t in enumerate(texts)}
    valid_sets = {k: ps.restrict_items(encoded.item_ids) for k, ps in build_validation_pairs(ds).items()} \
        if any(st.balanced for st in cfg.run_stages) else {}
    return train_on_pairs(encoded, pair_sets, text_tokens, text_index, cfg, out_dir, device, on_step, eval_sets,
                          valid_sets)


# ---- the loop -------------------------------------------------------------------------------------------
def train_on_pairs(encoded: EncodedItems, pair_sets: dict[str, PairSet], texts: TextTokens | None,
                   text_index: dict[str, int], cfg: EmbeddingTrainConfig, out_dir: str | Path,
                   device: str = "auto", on_step: Callable[[int, dict], None] | None = None,
                   eval_sets: dict[str, PairSet] | None = None, valid_sets: dict[str, PairSet] | None = None
                   ) -> TrainResult:
    """Train on `pair_sets`; evaluate on the held-out pairs of `eval_sets` (default: the training sets);
    balanced stages weigh the datasets against `valid_sets` (embedding.tasks.build_validation_pairs)."""
    out_dir = Path(out_dir)
    if not pair_sets:
        raise DataError("no training pairs: every pair builder came back empty (check the positive rule, the "
                        "split and embedding.train.pairs.i2i_window / i2i_max_gap_hours)")
    dev = resolve_device(device)
    with cpu_threads(cfg.num_threads), seeded(cfg.seed), deterministic_kernels():
        return _train(encoded, pair_sets, eval_sets or pair_sets, valid_sets or {}, texts, text_index, cfg, out_dir,
                      dev, on_step)


def _train(encoded: EncodedItems, pair_sets: dict[str, PairSet], eval_sets: dict[str, PairSet],
           valid_sets: dict[str, PairSet], texts: TextTokens | None,
           text_index: dict[str, int], cfg: EmbeddingTrainConfig, out_dir: Path, dev: torch.device,
           on_step: Callable[[int, dict], None] | None) -> TrainResult:
    """The loop itself, run with the config's thread count and seed (train_on_pairs sets both)."""
    ckpt_dir, model_dir = out_dir / "checkpoint", out_dir / "model"

    # -- data: pairs -> row indices into `encoded` (items) or `texts`; ids for in-batch duplicate masking
    item_row = {int(i): n for n, i in enumerate(encoded.item_ids)}

    def side(kind: str, values) -> tuple[np.ndarray, np.ndarray]:
        if kind == "item":
            ids = np.asarray(values, dtype=np.int64)
            return np.array([item_row[int(i)] for i in ids], dtype=np.int64), ids
        rows = np.array([text_index[t] for t in values], dtype=np.int64)
        return rows, -(rows + 1)  # text ids never collide with item ids (non-negative)

    data = {}
    for name, ps in sorted(pair_sets.items()):
        if "text" in (ps.query_kind, ps.target_kind) and texts is None:
            raise ValueError(f"pair set {name!r} has a text side but no text tokens were given")
        q_rows, q_ids = side(ps.query_kind, ps.train["query"])
        t_rows, t_ids = side(ps.target_kind, ps.train["target"])
        known = set(zip(q_ids.tolist(), t_ids.tolist()))
        if ps.symmetric:
            known |= {(b, a) for a, b in known}
        data[name] = (ps, q_rows, t_rows, q_ids, t_ids, known)
    sizes = {k: len(v[1]) for k, v in data.items()}
    patterns = {k: parse_patterns(cfg.patterns_of(k, v[0].query_kind, v[0].target_kind, v[0].graded),
                                  v[0].query_kind, v[0].target_kind) for k, v in data.items()}
    if bad := [k for k, v in data.items() if v[0].graded and not (len(patterns[k]) == 1 and patterns[k][0].is_omni)]:
        raise ConfigError(f"embedding.train.patterns: graded datasets {bad} are scored on whole items only")
    stages = cfg.run_stages
    stage_weights = []
    for st in stages:
        explicit = {k: w for k, w in st.tasks.items() if k in sizes}
        if st.tasks and not explicit:
            raise ConfigError(f"embedding.train.stages[{st.name}].tasks names datasets {sorted(st.tasks)} but "
                              f"only {sorted(sizes)} have pairs")
        if set(st.tasks) - set(explicit):
            log.warning("stage %s: datasets %s have no pairs; skipped", st.name, sorted(set(st.tasks) - set(sizes)))
        stage_weights.append(dataset_weights(sizes, cfg.sampling, explicit or None))
    stage_end = np.cumsum([s.steps for s in stages])
    recipe = RecipeState()
    # what the run depends on besides its config: a checkpoint from other inputs is not resumed
    meta = {**cfg.resume_meta(), "fingerprint": input_fingerprint(
        encoded.item_ids, encoded.text.tokens.shape, *[a for v in data.values() for a in v[3:5]],
        text=encoder_signature(encoded.info) + "\n".join(text_index)),
        "precision": resolve_precision(cfg.precision, dev)}  # "auto" as resolved here: no resuming across precisions

    def stage_of(step: int) -> int:
        return int(np.searchsorted(stage_end, step, side="right"))

    def get_batch(step: int) -> Batch:
        """Batch of step `step`: depends only on (seed, step) and what its stage computed at its start (in the
        checkpoint), so resuming reproduces it."""
        rng = np.random.default_rng([cfg.seed, step])
        weights = stage_weights[stage_of(step)]
        name = list(weights)[rng.choice(len(weights), p=list(weights.values()))]
        ps, q_rows, t_rows, q_ids, t_ids, known = data[name]
        pick = rng.choice(len(q_rows), size=min(cfg.batch_size, len(q_rows)), replace=False)
        qk, tk, qr, tr, qi, ti = ps.query_kind, ps.target_kind, q_rows[pick], t_rows[pick], q_ids[pick], t_ids[pick]
        if ps.symmetric:  # either item may be the query: both roles see every item
            swap = rng.random(len(pick)) < 0.5
            qr, tr = np.where(swap, tr, qr), np.where(swap, qr, tr)
            qi, ti = np.where(swap, ti, qi), np.where(swap, qi, ti)
        make = lambda kind, rows: (collate(encoded, rows, dev) if kind == "item"  # noqa: E731
                                   else collate_texts(texts, rows, dev))
        labels = torch.as_tensor(np.stack([qi, ti], 1), device=dev)  # (B, 2)
        negatives = negative_ids = None
        if name in recipe.mined:  # this stage's hard negatives of the batch's queries
            nr = recipe.mined[name][qr].reshape(-1)
            nr = nr[nr >= 0]
            nid = encoded.item_ids[nr].astype(np.int64) if tk == "item" else -(nr + 1)
            negatives, negative_ids = make(tk, nr), torch.as_tensor(nid, device=dev)
        # (query i, target j) pairs that are known training positives: not negatives of each other
        cols = ti.tolist() + (negative_ids.tolist() if negative_ids is not None else [])
        positives = torch.as_tensor([[(a, b) in known for b in cols] for a in qi.tolist()], device=dev)  # (B, B+M)
        scores = torch.as_tensor(ps.train["score"].to_numpy(np.float32)[pick], device=dev) if ps.graded else None
        return Batch(name, ps.task, make(qk, qr), make(tk, tr), labels, positives, negatives, negative_ids, scores)

    def prepare_stage(s: int) -> None:
        """At a stage's start (or on resuming inside it): its balanced weights and its hard negatives."""
        st = stages[s]
        if not (st.balanced or st.hard_negatives):
            recipe.mined = {}
            return
        model.eval()
        embedder = ModelEmbedder(model, encoded, texts, text_index, cfg.infer_batch_size, str(dev))
        with torch.no_grad():
            if st.balanced:
                if recipe.balance_weights is None:
                    if not valid_sets:
                        raise DataError("a balanced stage needs validation pairs from the training period, and none "
                                        "could be built (no user has two training positives)")
                    recipe.balance_weights, table = balanced_stage_weights(
                        embedder, {k: v[0] for k, v in data.items()}, valid_sets, cfg.balance)
                    recipe.balance_table = plain_columns(table.reset_index())
                names = [k for k in stage_weights[s] if (st.tasks.get(k, 1.0) if st.tasks else 1.0) > 0]
                total = sum(recipe.balance_weights[k] for k in names)
                stage_weights[s] = {k: recipe.balance_weights[k] / total for k in names}
            if st.hard_negatives and recipe.mined_stage != s:
                recipe.mined, recipe.mining[st.name] = {}, {}
                for name in [k for k in stage_weights[s] if not data[k][0].graded]:  # graded: no negatives
                    ps = data[name][0]
                    rows = {"item": item_row, "text": text_index}
                    out = mine_pair_set(embedder, ps, st.hard_negatives, rows[ps.query_kind],
                                        rows[ps.target_kind], cfg.mining)
                    if isinstance(out, str):
                        recipe.mining[st.name][name] = {"skipped": out}
                        continue
                    table, mined = out
                    recipe.mined[name] = table
                    recipe.mining[st.name][name] = {"lambda": mined.threshold, **mined.info,
                                                    "curve": plain_columns(mined.curve)}
                recipe.mined_stage = s
            elif not st.hard_negatives:
                recipe.mined = {}
        model.train()

    # -- model, loss, optimizer, schedule
    model = OmniEmbeddingModel(cfg.model.with_inputs(encoded))
    model.fit_precomputed_scaling(encoded.precomputed)
    model = model.to(dev)
    keys = {pattern_key(name, p): cfg.temperatures.get(name, cfg.temperature) for name in data for p in patterns[name]}
    nce = InfoNCELoss(model, keys=sorted(keys), temperature=keys, learnable=cfg.learnable_temperature,
                      symmetric=cfg.symmetric).to(dev)
    loss_fn = MatryoshkaLoss(nce, model.config.all_dims, cfg.matryoshka_weights)
    graded_fn = MatryoshkaLoss(CoSENTLoss(model), model.config.all_dims,
                               [cfg.cosent_weight * w for w in loss_fn.weights])

    def objective(b: Batch, sides: PatternSides, positives: torch.Tensor | None) -> torch.Tensor:
        return graded_loss(graded_fn, b, sides) if b.scores is not None else pattern_loss(loss_fn, b, sides, positives)

    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay, list(nce.log_temperature.parameters()),
                                          residual_lr_scale=cfg.residual_lr_scale)
    scheduler = warmup_cosine_schedule(optimizer, [cfg.total_steps], cfg.warmup_steps, cfg.min_lr / cfg.lr)
    log.info("embedding model: %.2fM parameters, datasets %s, weights %s", model.num_parameters / 1e6, sizes,
             stage_weights)

    # -- resume
    step, history = 0, []
    saved = load_checkpoint(ckpt_dir, meta, dev)
    if saved is not None:
        model.load_state_dict(OmniEmbeddingModel.from_pretrained(ckpt_dir).state_dict())
        nce.log_temperature.load_state_dict(saved["temperatures"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, history = saved["step"], saved["history"]
        recipe.load_state_dict(saved["recipe"])
        log.info("resumed from %s at step %d", ckpt_dir, step)

    evaluators = evaluators_from_pairs(eval_sets, encoded.item_ids, cfg.eval_max_queries, cfg.seed)
    graded = graded_evaluators(eval_sets, encoded.item_ids, cfg.eval_max_queries, cfg.seed)

    def evaluate() -> dict[str, float]:
        embedder = ModelEmbedder(model, encoded, texts, text_index, cfg.infer_batch_size, str(dev))
        return run_evaluators(evaluators, embedder)

    # -- train
    total = cfg.total_steps
    start_step, train_time, running, prepared = step, 0.0, None, -1
    model.train()
    with tqdm(total=total, initial=step, desc="embedding", disable=None) as bar:
        while step < total:
            if stage_of(step) != prepared:
                prepared = stage_of(step)
                prepare_stage(prepared)
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            b = get_batch(step)
            name = b.name
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout + field dropout of this step
            mask = b.positives if cfg.mask_known_positives else None
            with autocast(dev, cfg.precision):
                sides = embed_patterns(model, b, patterns[name])
                loss = objective(b, sides, mask)
            with torch.no_grad():
                chance = float(objective(b, sides.flat(), mask))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(nce.log_temperature.parameters()),
                                           cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            train_time += time.perf_counter() - t0
            lossf = float(loss.detach())
            running = lossf if running is None else 0.9 * running + 0.1 * lossf
            history.append({"step": step, "dataset": name, "loss": lossf, "lr": lr, "chance": chance})
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", ds=name)
            if step % cfg.log_every == 0 or step == total:
                log.info("step %d/%d loss %.4f (avg %.4f) lr %.2e %.2f steps/s", step, total, lossf, running,
                         lr, (step - start_step) / max(train_time, 1e-9))
            if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                m = evaluate()
                model.train()
                history[-1]["eval"] = m
                log.info("step %d eval %s", step, {k: round(v, 4) for k, v in m.items()})
            if step % cfg.checkpoint_every == 0 or step == total:
                save_checkpoint(ckpt_dir, model, {"optimizer": optimizer.state_dict(),
                                                  "scheduler": scheduler.state_dict(),
                                                  "temperatures": nce.log_temperature.state_dict(),
                                                  "step": step, "history": history,
                                                  "recipe": recipe.state_dict()}, meta)
            if on_step is not None:
                on_step(step, history[-1])
    steps_run = step - start_step
    steps_per_sec = steps_run / train_time if train_time > 0 else float("nan")

    # -- final model, metrics (trained model vs text-only baseline on the same held-out pairs)
    model.eval()
    with atomic_directory(model_dir) as tmp:
        model.save_pretrained(tmp)
    baseline_texts = {}
    if texts is not None:
        pooled = pool_text_tokens(texts)
        baseline_texts = {t: pooled[i] for t, i in text_index.items()}
    embedder = ModelEmbedder(model, encoded, texts, text_index, cfg.infer_batch_size, str(dev))
    queries = pd.concat([ev.query_table(embedder) for ev in evaluators], ignore_index=True)
    baseline = VectorEmbedder(encoded.item_ids, encoded.pooled_text, baseline_texts)
    baseline_queries = pd.concat([ev.query_table(baseline) for ev in evaluators], ignore_index=True)
    write_parquet(out_dir / RETRIEVAL_QUERIES, queries)
    write_parquet(out_dir / BASELINE_QUERIES, baseline_queries)
    extra: dict[str, float] = {}  # missing-modality robustness, graded pairs (model and baseline)
    for modality in encoded.modalities() if cfg.eval_missing_modalities else []:
        partial = ModelEmbedder(model, encoded.without(modality), texts, text_index, cfg.infer_batch_size, str(dev))
        without = pd.concat([ev.query_table(partial) for ev in evaluators], ignore_index=True)
        extra.update({**summarize(without, f"without_{modality}/"),
                      **compare_query_tables(without, queries, f"without_{modality}_vs_full/", seed=cfg.seed)})
    for ev in graded:
        extra.update({**ev(embedder), **{f"baseline/{k}": v for k, v in ev(baseline).items()}})
    metrics = {**summarize(queries), **summarize(baseline_queries, "baseline/"),
               **compare_query_tables(queries, baseline_queries, "vs_baseline/", seed=cfg.seed), **extra,
               **recipe.metrics()}
    tail = [h["loss"] for h in history[-max(1, min(50, len(history))):]]
    chance_ratio = warn_if_at_chance(history, content_presence(encoded))
    metrics.update({"train/loss": float(np.mean(tail)) if tail else float("nan"), "train/steps": float(step),
                    **{f"train/loss_vs_chance/{k}": v for k, v in chance_ratio.items()},
                    **{f"temperature/{k}": nce.temperature(k).item() for k in sorted(nce.log_temperature)}})
    pair_info = {k: {"train_pairs": len(ps.train), "holdout_pairs": len(ps.holdout), **ps.info}
                 for k, ps in pair_sets.items()}
    write_json(out_dir / "train_summary.json", {
        "metrics": metrics, "steps_per_sec": steps_per_sec, "steps_this_run": steps_run, "pairs": pair_info,
        "loss": loss_fn.get_config_dict(), "dataset_weights": stage_weights, "model_parameters": model.num_parameters,
        "recipe": {"stages": [st.model_dump() for st in stages], "balance": recipe.balance_table,
                   "mining": recipe.mining}})
    log.info("embedding training done: %s", {k: round(v, 4) for k, v in metrics.items()})
    return TrainResult(model_dir, metrics, steps_per_sec, pair_info)
