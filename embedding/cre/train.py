"""CRE's training loop, top to bottom (nanoGPT style): build the state, loop over steps, evaluate at the end.

    run_cre(ds, encoded, base_model_dir, teachers, cfg, out_dir, device) -> CREResult
      1. inputs      teacher tables -> checked vectors; input fingerprint; a finished run is returned as it is
      2. build_state model (+ item memory), frozen fusion outputs, data, samplers, losses + heads, optimizer,
                     the per-stage warmup + cosine schedule (embedding.schedule)
      3. resume      from out_dir/checkpoint (recsys.checkpoint), refused when config or inputs differ
      4. loop        train_step (stage 1 seq2item, then stage 2 ID2item + seq2item), log, checkpoint
      5. finish      save the model and the heads, evaluate the content model ("before/") and the CRE model

Layout of out_dir:
    checkpoint/         model.safetensors, config.json, state.pt (optimizer, schedule, losses + heads, bank,
                        step, history), meta.json (config + input fingerprint)
    model/              the final model (save_pretrained)
    heads.safetensors   the projection heads (embedding.cre.heads.load_heads)
    cre_summary.json    metrics (after, before/..., vs_before/... paired intervals), steps/s, data counts, loss config
    retrieval_queries.parquet   the CRE model's per-query seq2item and i2i values (embedding.evaluate)

Resumable: the batch, dropout and field dropout of step s depend only on (seed, s) and the bank is in the
checkpoint, so an interrupted + resumed run equals an uninterrupted one; rerunning a finished run returns its result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm.auto import tqdm

from embedding.cre.config import CREConfig
from embedding.cre.data import CREData, build_cre_data, teacher_matrix
from embedding.cre.embedder import ItemEmbedder, frozen_outputs
from embedding.cre.evaluate import (
    CREEvalConfig,
    ItemSpace,
    build_cre_evaluators,
    cre_query_table,
    per_query_evaluators,
    run_cre_evaluators,
)
from embedding.cre.heads import HEADS_NAME, ProjectionHead, project, save_heads
from embedding.cre.objectives import CREObjectives
from embedding.cre.samplers import ID2ItemSampler, Seq2ItemSampler
from embedding.cre.sequences import seq2item_events
from embedding.encoders.types import EncodedItems
from embedding.evaluate import RETRIEVAL_QUERIES, compare_query_tables, summarize
from embedding.fingerprint import encoder_signature, input_fingerprint
from embedding.infer import ITEM_ROLE
from embedding.model import OmniEmbeddingModel
from embedding.schedule import warmup_cosine_schedule
from recsys.checkpoint import load_checkpoint, save_checkpoint
from recsys.data.dataset import Dataset
from recsys.io import atomic_directory, write_json, write_parquet
from recsys.runtime import autocast, cpu_threads, deterministic_kernels, resolve_device, resolve_precision, seeded

log = logging.getLogger(__name__)

SUMMARY_NAME = "cre_summary.json"
STAGES = ("seq2item", "id2item")


@dataclass
class CREResult:
    model_dir: Path
    metrics: dict[str, float]
    steps_per_sec: float
    heads_path: Path | None = None
    info: dict = field(default_factory=dict)


# ---- the state --------------------------------------------------------------------------------------------------
@dataclass
class CREState:
    """Everything the loop reads and changes; `checkpoint_state` is what a checkpoint keeps besides the model."""

    model: OmniEmbeddingModel
    heads: nn.ModuleDict  # teacher -> ProjectionHead (also inside objectives.distill)
    objectives: CREObjectives
    embed: ItemEmbedder
    optimizer: torch.optim.AdamW
    scheduler: LRScheduler
    clip_params: list[nn.Parameter]
    seq2item: Seq2ItemSampler | None  # None: no sequences (stage 1 off and no multi-task term)
    id2item: ID2ItemSampler | None  # None: stage 2 off
    bank: torch.Tensor | None  # [N, D] item embeddings without gradient (fine-tuning with history_grad only)
    step: int = 0
    history: list[dict] = field(default_factory=list)


def _load_base_model(base_model_dir: Path, encoded: EncodedItems, cfg: CREConfig,
                     device: torch.device) -> OmniEmbeddingModel:
    model = OmniEmbeddingModel.from_pretrained(base_model_dir, device)
    if model.config.text_dim != encoded.text.tokens.shape[-1]:
        raise ValueError(f"base model expects text_dim={model.config.text_dim}, the encoded items have "
                         f"{encoded.text.tokens.shape[-1]}")
    if not cfg.finetune_fusion and not cfg.memory_hidden:
        raise ValueError("CRE with finetune_fusion=false trains only the item memory: set memory_hidden > 0")
    return model.with_memory(cfg.memory_hidden) if cfg.memory_hidden else model  # memory output 0 at the start


def _trainable(model: OmniEmbeddingModel) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(model parameters outside the item memory, item-memory parameters) that have gradients."""
    memory = {id(p) for p in (model.memory.parameters() if model.memory is not None else [])}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [p for p in trainable if id(p) not in memory], [p for p in trainable if id(p) in memory]


def _optimizer(mparams: list[nn.Parameter], memparams: list[nn.Parameter], hparams: list[nn.Parameter],
               temperatures: list[nn.Parameter], cfg: CREConfig) -> torch.optim.AdamW:
    """AdamW with one peak lr per part (model, item memory, heads) and decay on matrices only."""
    groups = [(cfg.lr, [p for p in mparams if p.dim() >= 2], cfg.weight_decay),
              (cfg.lr, [p for p in mparams if p.dim() < 2] + temperatures, 0.0),
              (cfg.memory_lr, [p for p in memparams if p.dim() >= 2], cfg.weight_decay),
              (cfg.memory_lr, [p for p in memparams if p.dim() < 2], 0.0),
              (cfg.head_lr, [p for p in hparams if p.dim() >= 2], cfg.weight_decay),
              (cfg.head_lr, [p for p in hparams if p.dim() < 2], 0.0)]
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for lr, ps, wd in groups if ps],
                             betas=(0.9, 0.98))


def build_state(ds: Dataset, encoded: EncodedItems, base_model_dir: Path,
                teachers: dict[str, tuple[np.ndarray, np.ndarray]], cfg: CREConfig, device: torch.device,
                history_events: pd.DataFrame, eval_targets: pd.DataFrame) -> tuple[CREState, CREData]:
    """A fresh state at step 0 (call inside `seeded(cfg.seed)`: the item memory and the heads draw their init)."""
    model = _load_base_model(base_model_dir, encoded, cfg, device)
    frozen = None
    if not cfg.finetune_fusion:
        roles = [ITEM_ROLE] + (["query"] if cfg.uses_aux_i2i else [])
        frozen = frozen_outputs(model, encoded, roles, cfg.infer_batch_size, device)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("memory."))
    embed = ItemEmbedder(model, encoded, frozen, device, cfg.infer_batch_size)
    base_vectors = embed.all_items()  # [N, D] the content model: filter, anchor, bank at step 0, "before" metrics
    data = build_cre_data(ds, encoded.item_ids, base_vectors, teachers, history_events, eval_targets, cfg, device)

    dim = model.config.embed_dim
    heads = nn.ModuleDict({name: ProjectionHead(dim, cfg.head_hidden, vec.shape[1])
                           for name, (_, vec) in teachers.items()}).to(device)
    objectives = CREObjectives(cfg, heads, model.config.all_dims, data, device)
    mparams, memparams = _trainable(model)
    hparams, temperatures = list(heads.parameters()), objectives.temperatures
    optimizer = _optimizer(mparams, memparams, hparams, temperatures, cfg)
    scheduler = warmup_cosine_schedule(optimizer, [cfg.seq2item_steps, cfg.id2item_steps], cfg.warmup_steps,
                                       cfg.min_lr / cfg.lr)
    clip = mparams + memparams + hparams + temperatures
    seq2item = (Seq2ItemSampler(data.sequences, cfg.sequence_mix, cfg.batch_size,
                                cfg.history_grad if cfg.uses_bank else None) if data.sequences else None)
    id2item = (ID2ItemSampler(data.distill_rows, data.aux_pairs, cfg.batch_size, cfg.aux_batch_size)
               if cfg.id2item_steps else None)
    bank = torch.as_tensor(base_vectors, device=device) if cfg.uses_bank else None
    model.train()
    heads.train()
    return CREState(model, heads, objectives, embed, optimizer, scheduler, clip, seq2item, id2item, bank), data


# ---- checkpoint -------------------------------------------------------------------------------------------------
def checkpoint_state(state: CREState) -> dict:
    """Tensors and plain containers only (loads with weights_only=True)."""
    return {"optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
            "objectives": state.objectives.state_dict(), "bank": None if state.bank is None else state.bank.cpu(),
            "step": state.step, "history": state.history}


def save_state(state: CREState, ckpt_dir: Path, meta: dict) -> None:
    save_checkpoint(ckpt_dir, state.model, checkpoint_state(state), meta)


def restore_state(state: CREState, ckpt_dir: Path, meta: dict, device: torch.device) -> bool:
    """Load the checkpoint into `state`; False when there is none (CheckpointMismatch when meta differs)."""
    saved = load_checkpoint(ckpt_dir, meta, device)
    if saved is None:
        return False
    state.model.load_state_dict(OmniEmbeddingModel.from_pretrained(ckpt_dir).state_dict())
    state.objectives.load_state_dict(saved["objectives"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.bank = None if saved["bank"] is None else saved["bank"].to(device)
    state.step, state.history = saved["step"], saved["history"]
    return True


# ---- one step ---------------------------------------------------------------------------------------------------
def stage_of(step: int, cfg: CREConfig) -> str:
    return STAGES[0] if step < cfg.seq2item_steps else STAGES[1]


def train_step(state: CREState, cfg: CREConfig) -> dict:
    """One optimizer step at `state.step`; returns (and appends to the history) its log row."""
    step, stage = state.step, stage_of(state.step, cfg)
    if stage == "seq2item" and state.bank is not None and step > 0 and step % cfg.bank_refresh_every == 0:
        state.bank = torch.as_tensor(state.embed.all_items(), device=state.bank.device)  # (N, D), no gradient
    lr = state.optimizer.param_groups[0]["lr"]  # the schedule's value for this step (model or temperature group)
    rng = np.random.default_rng([cfg.seed, step])  # the batch of step s depends only on (seed, s)
    torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout + field dropout of this step
    with autocast(state.embed.device, cfg.precision):
        if stage == "seq2item":
            loss, parts = state.objectives.seq2item(state.seq2item.sample(rng), state.embed, state.bank)
        else:
            loss, parts = state.objectives.id2item(state.id2item.sample(rng), state.embed)
            if state.seq2item is not None and cfg.id2item_seq2item_weight > 0:  # multi-task: keep stage 1's loss
                l_s, _ = state.objectives.seq2item(state.seq2item.sample(rng), state.embed, state.bank)
                loss = loss + cfg.id2item_seq2item_weight * l_s
                parts["seq2item"] = float(l_s.detach())
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.clip_params, cfg.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    row = {"step": state.step, "stage": stage, "loss": float(loss.detach()), "lr": lr, **parts}
    state.history.append(row)
    return row


# ---- evaluation -------------------------------------------------------------------------------------------------
def _eval_config(cfg: CREConfig) -> CREEvalConfig:
    """The evaluators query with the sequences CRE trains on (same history settings and pairs)."""
    return CREEvalConfig(history_len=cfg.history_len, min_history=cfg.min_history, max_lookback=cfg.max_lookback,
                         max_queries=cfg.eval_max_queries, pairs=cfg.pairs, seed=cfg.seed)


def evaluate(ds: Dataset, state: CREState, data: CREData, teachers: dict[str, tuple[np.ndarray, np.ndarray]],
             cfg: CREConfig) -> tuple[dict[str, float], pd.DataFrame]:
    """Every CRE evaluator on the CRE model (with its heads' projections) and, prefixed "before/", on the
    content model, with paired intervals ("vs_before/") where queries are scored one by one; plus the stages'
    final training losses and the learnt temperatures. Returns (metrics, the CRE model's per-query table)."""
    tables = {k: pd.DataFrame({"item_id": ids, "embedding": list(vec)}) for k, (ids, vec) in teachers.items()}
    evaluators = build_cre_evaluators(ds, data.item_ids, tables, _eval_config(cfg), data.item_ids, data.base_vectors)
    after = state.embed.all_items()
    after_space, before_space = ItemSpace(data.item_ids, after, project(state.heads, after)), \
        ItemSpace(data.item_ids, data.base_vectors)
    scored = {id(ev) for ev in per_query_evaluators(evaluators)}  # summarised from their per-query tables
    rest = [ev for ev in evaluators if id(ev) not in scored]
    queries, before_queries = cre_query_table(evaluators, after_space), cre_query_table(evaluators, before_space)
    metrics = {**run_cre_evaluators(rest, after_space), **summarize(queries)}
    metrics.update({**run_cre_evaluators(rest, before_space, prefix="before/"), **summarize(before_queries, "before/")})
    metrics.update(compare_query_tables(queries, before_queries, "vs_before/", seed=cfg.seed))
    for stage in STAGES:
        tail = [h["loss"] for h in state.history if h["stage"] == stage][-25:]
        if tail:
            metrics[f"train/{stage}_loss"] = float(np.mean(tail))
    seq_nce, aux_nce = state.objectives.seq2item_loss.base_loss, state.objectives.aux_i2i_loss.base_loss
    metrics.update({"train/steps": float(state.step), "cold/items": float(data.info["cold_items"]),
                    **{f"temperature/seq2item_{k}": seq_nce.temperature(k).item() for k in data.sequences},
                    **({"temperature/aux_i2i": aux_nce.temperature("i2i").item()} if data.aux_pairs else {})})
    return metrics, queries


# ---- the run ----------------------------------------------------------------------------------------------------
def run_cre(ds: Dataset, encoded: EncodedItems, base_model_dir: str | Path, teachers: dict[str, pd.DataFrame],
            cfg: CREConfig | None, out_dir: str | Path, device: str = "auto",
            on_step: Callable[[int, dict], None] | None = None) -> CREResult:
    """Seq2item then ID2item on top of the content model in `base_model_dir`; teachers: name -> item table
    (item_id, embedding: L2-normalised teacher item-ID vectors, e.g. TeacherResult.item_embeddings)."""
    cfg = cfg or CREConfig()
    out_dir, base_model_dir = Path(out_dir), Path(base_model_dir)
    ckpt_dir, model_dir, heads_path = out_dir / "checkpoint", out_dir / "model", out_dir / HEADS_NAME
    if not teachers and cfg.id2item_steps:
        raise ValueError("run_cre: id2item_steps > 0 but no teachers were given")
    tmat = {name: teacher_matrix(t, name) for name, t in sorted(teachers.items())}
    unknown = set(cfg.teacher_weights) - set(tmat)
    if unknown:
        raise ValueError(f"teacher_weights name teachers {sorted(unknown)} that were not given ({sorted(tmat)})")
    history_events, eval_targets = seq2item_events(ds)
    fingerprint = input_fingerprint(encoded.item_ids, encoded.text.tokens.shape, history_events["item_id"].to_numpy(),
                                    history_events["user_id"].to_numpy(), eval_targets["item_id"].to_numpy(),
                                    *[a for name in tmat for a in tmat[name]],
                                    files=(base_model_dir / "model.safetensors",),
                                    text=encoder_signature(encoded.info))
    dev = resolve_device(device)
    # "auto" precision is resolved on this machine: a checkpoint trained in another precision is not resumed
    meta = {**cfg.resume_meta(), "fingerprint": fingerprint, "precision": resolve_precision(cfg.precision, dev)}

    # a finished run with the same config and inputs is not trained again
    summary_path = out_dir / SUMMARY_NAME
    if summary_path.is_file() and (model_dir / "config.json").is_file():
        done = json.loads(summary_path.read_text())
        if done.get("config") == cfg.resume_meta() and done.get("fingerprint") == fingerprint:
            log.info("CRE already finished in %s", out_dir)
            return CREResult(model_dir, done["metrics"], done["steps_per_sec"],
                             heads_path if heads_path.is_file() else None, done.get("info", {}))

    with cpu_threads(cfg.num_threads), seeded(cfg.seed), deterministic_kernels():
        state, data = build_state(ds, encoded, base_model_dir, tmat, cfg, dev, history_events, eval_targets)
        if restore_state(state, ckpt_dir, meta, dev):
            log.info("CRE resumed from %s at step %d", ckpt_dir, state.step)

        total, start_step, train_time, running = cfg.total_steps, state.step, 0.0, None
        stage_time = {s: [0.0, 0] for s in STAGES}
        with tqdm(total=total, initial=state.step, desc="cre", disable=None) as bar:
            while state.step < total:
                t0 = time.perf_counter()
                row = train_step(state, cfg)
                dt = time.perf_counter() - t0
                train_time += dt
                stage_time[row["stage"]][0] += dt
                stage_time[row["stage"]][1] += 1
                running = row["loss"] if running is None else 0.9 * running + 0.1 * row["loss"]
                bar.update(1)
                bar.set_postfix(loss=f"{running:.3f}", stage=row["stage"])
                if state.step % cfg.log_every == 0 or state.step == total:
                    log.info("CRE step %d/%d %s loss %.4f (avg %.4f) %.2f steps/s", state.step, total, row["stage"],
                             row["loss"], running, (state.step - start_step) / max(train_time, 1e-9))
                if state.step % cfg.checkpoint_every == 0 or state.step == total:
                    save_state(state, ckpt_dir, meta)
                if on_step is not None:
                    on_step(state.step, row)
        steps_run = state.step - start_step
        steps_per_sec = steps_run / train_time if train_time > 0 else float("nan")

        # the final model + heads, then metrics before (content model) and after
        state.model.eval()
        state.heads.eval()
        with atomic_directory(model_dir) as tmp:
            state.model.save_pretrained(tmp)
        save_heads(state.heads, heads_path)
        t0 = time.perf_counter()
        metrics, queries = evaluate(ds, state, data, tmat, cfg)
        write_parquet(out_dir / RETRIEVAL_QUERIES, queries)
    info = {**data.info, "eval_seconds": time.perf_counter() - t0, "steps_this_run": steps_run,
            "stage_steps_per_sec": {k: (v[1] / v[0] if v[0] > 0 else None) for k, v in stage_time.items()},
            "loss": state.objectives.get_config_dict()}
    write_json(summary_path, {"metrics": metrics, "steps_per_sec": steps_per_sec, "info": info,
                              "config": cfg.resume_meta(), "fingerprint": fingerprint})
    log.info("CRE done: %s", {k: round(v, 4) for k, v in metrics.items() if not k.startswith("before/")})
    return CREResult(model_dir, metrics, steps_per_sec, heads_path, info)


__all__ = ["CREResult", "CREState", "build_state", "checkpoint_state", "evaluate", "restore_state", "run_cre",
           "save_state", "stage_of", "train_step"]
