"""Collaboration-aware recommendation enhancement, CRE (SAIL-Embedding §3.3.5), after content training.

    run_cre(ds, encoded, base_model_dir, teachers, cfg, out_dir, device)
      stage 1  seq2item  (cfg.seq2item_steps)  mean of <= 10 history item embeddings -> next item, InfoNCE
      stage 2  ID2item   (cfg.id2item_steps)   linear heads onto the teachers' item-ID vectors + seq2item
      -> CREResult(model_dir, metrics (before/... and after), steps_per_sec)

Seq2item. Sequences come from TRAIN-split positives minus each user's last one (`seq2item_events`: the last one
is the evaluation target and is never trained on). Every earlier positive with >= `min_history` distinct
earlier items is a target; its query is the normalised MEAN of the model's own embeddings of <= `history_len`
of them. Two kinds (embedding.tasks.build_sequences), one kind per batch (stochastic specialization, §3.3.3) with
probabilities `sequence_mix` and a learnable temperature each:
  vanilla   a random subset of the earlier items;
  filtered  the earlier items most similar to the target under the CONTENT model (cosine of the base model's
            item embeddings, computed once at the start): history consistent with the target. We filter by
            content similarity (SAIL: "by content tags or collaborative clusters"), so the filter cannot leak
            the teachers' collaborative signal into the data selection.

What learns (our choice for CPU budgets; SAIL fine-tunes its whole model). CRE adds an item memory to the
model (embedding.model.InputMemory: a wide MLP over the pooled raw inputs, added to the output, zero at the
start). With `finetune_fusion: false` (default) the fusion transformer is frozen: its per-item outputs are
computed once, each step costs one MLP pass, and 1,200 steps take about two minutes on one CPU thread. Fine-tuning the
128-wide fusion transformer instead (600 distillation steps) moved the teacher cosine from 0 to 0.4 and left
behaviour-pair i2i recall where it was (0.011 -> 0.015 on the synthetic world); with the memory, the demo's CRE
raises it to 0.025. Items are still embedded from content alone (cold items too).
With `finetune_fusion: true` the whole model trains; to fit CPU budgets only `history_grad` random history items
per sequence (and every target) are then embedded with gradients, the others are read from a bank of item
embeddings (no gradient) refreshed every `bank_refresh_every` steps (a MoCo-style memory bank);
`history_grad = history_len` is the exact formulation.

ID2item (feature distillation). For every teacher (e.g. {"id": two-tower, "sequence": SASRec}) a ProjectionHead
(linear by default: an MLP head learnt the teacher from small differences between student vectors and left the
embedding as it was; `head_hidden` > 0 gives one) maps the student's item embedding onto that teacher's item-ID
vectors, with `DistillationLoss` = w_cos * (1 - cos) + w_nce * in-batch InfoNCE(projected, teacher). Cosine
alone fixes each item's position; the contrastive term keeps the teacher's neighbourhoods apart (its relative
geometry), which is what recommendation uses. Only items in a teacher's vocabulary (train-period items) are
distillation targets; batches are drawn from the union of the vocabularies and each teacher's loss uses its own items.
Multi-task (stage 2 is never distillation alone): the seq2item loss keeps running (`id2item_seq2item_weight`;
without it distillation undid stage 1 and cost 0.04 ranker AUC on the synthetic world), the content anchor keeps
content perception, and optionally the auxiliary i2i loss (content trainer's Matryoshka InfoNCE on co-engagement
pairs, `aux_i2i_weight`, off by default: see its description). One head per teacher (rather than one head onto
the concatenation) so that teachers of different widths/scales are weighted explicitly (`teacher_weights`) and a
missing teacher drops out cleanly. The heads sit on the L2-normalised item embedding the item table carries, so
the distillation shapes exactly that vector; the heads are saved beside the model (heads.safetensors), outside
its state, so `OmniEmbeddingModel.from_pretrained(out_dir / "model")` works unchanged.

Content anchor (our addition, both stages, `content_anchor_weight`): 1 - cos(item's current embedding, its
content-model embedding), 0 until CRE moves the item. An in-batch InfoNCE version (each item must retrieve its own
content vector) also pushed items of one topic apart and cost ranker AUC; the cosine only limits the drift.

Cold start: an item with no interactions (no teacher vector, in no sequence) is embedded from its content by the
same forward pass; the item memory maps its content as it learnt to map its warm look-alikes.

Every item is embedded in the item table's instruction (target role, task "i2i") in both stages: CRE trains the
very vectors that downstream stages (interests, match features) average and compare.

Layout of out_dir:
    checkpoint/  model.safetensors, config.json, state.pt (optimizer, losses + heads, bank, step, config)
    model/       the final model (save_pretrained)
    heads.safetensors   the projection heads (load_heads)
    cre_summary.json    metrics (after, and before/...), steps/s, data counts, loss config
Resumable: batches, dropout and field dropout of step s depend only on (seed, s) and the bank is checkpointed,
so an interrupted + resumed run equals an uninterrupted one; rerunning a finished run returns its result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from embedding.cre_eval import (ITEM_ROLE, ITEM_TASK, CREEvalConfig, ItemSpace, build_cre_evaluators,
                                run_cre_evaluators, teacher_matrix)
from embedding.encoders.types import EncodedItems
from embedding.infer import embed_items
from embedding.losses import DistillationLoss, InfoNCELoss, MatryoshkaLoss
from embedding.model import OmniEmbeddingModel, collate
from embedding.tasks import SEQUENCE_KINDS, PairConfig, build_i2i_pairs, build_sequences, seq2item_events
from recsys.data.dataset import Dataset, atomic_directory
from recsys.utils import resolve_device, seed_everything

log = logging.getLogger(__name__)

HEADS_NAME = "heads.safetensors"
SUMMARY_NAME = "cre_summary.json"


class CREConfig(BaseModel):
    """Defaults fit the demo budget with the frozen fusion model (finetune_fusion=false): 600 + 600 steps of
    one item-memory MLP pass each, about two minutes on one CPU thread for ~2000 items (plus evaluation).
    The loss weights were chosen on the synthetic world by the ranker's AUC with CRE match features against
    content-only ones (README, CRE section), not by the CRE evaluators alone."""

    model_config = ConfigDict(extra="forbid")

    seq2item_steps: int = Field(600, ge=0, description="stage 1 (SAIL: seq2item first)")
    id2item_steps: int = Field(600, ge=0, description="stage 2")
    batch_size: int = Field(128, gt=1, description="sequences per seq2item batch; items per distillation batch")
    aux_batch_size: int = Field(16, gt=1, description="co-engagement pairs per ID2item step (auxiliary i2i)")
    lr: float = Field(5e-4, gt=0, description="peak lr of the embedding model (fine-tuning: half the content lr)")
    head_lr: float = Field(2e-3, gt=0, description="peak lr of the new projection heads")
    memory_hidden: int = Field(1024, ge=0, description="width of the item memory CRE adds to the model "
                                                       "(embedding.model.InputMemory); 0 = none")
    memory_lr: float = Field(1e-3, gt=0, description="peak lr of the item memory")
    finetune_fusion: bool = Field(False, description="also fine-tune the fusion transformer (SAIL fine-tunes the "
                                  "whole model; costly on CPU). False: it is frozen, its outputs are computed "
                                  "once, and only the item memory, heads and temperatures learn")
    min_lr: float = Field(5e-5, ge=0, description="end of each stage's cosine decay (heads: scaled alike)")
    warmup_steps: int = Field(10, ge=0, description="linear warmup at the start of each stage")
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    # seq2item
    history_len: int = Field(10, gt=0, description="history items averaged into the query (SAIL: 10)")
    min_history: int = Field(3, gt=0, description="fewer usable earlier positives: no sequence")
    max_lookback: int = Field(50, gt=0, description="history items are drawn from the last N earlier positives")
    sequence_mix: dict[str, float] = Field(default_factory=lambda: {"vanilla": 0.5, "filtered": 0.5},
                                           description="sequence kind -> share of seq2item batches")
    filter_by: str = Field("content", description="filtered sequences keep the history items most similar to "
                           "the target under 'content' (the content model) or a teacher's item-ID vectors (its name, "
                           "e.g. 'id': SAIL's collaborative filtering of sequences)")
    history_grad: int = Field(2, gt=0, description="history items per sequence embedded with gradients; the "
                                                   "rest come from the item bank (= history_len: no bank)")
    bank_refresh_every: int = Field(50, gt=0, description="re-embed the item bank every N seq2item steps")
    temperature: float = Field(0.05, gt=0, description="initial InfoNCE temperature (seq2item, aux i2i)")
    # ID2item
    head_hidden: int = Field(0, ge=0, description="projection head: D -> head_hidden -> teacher dim; 0 = linear")
    distill_temperature: float = Field(0.05, gt=0, description="initial temperature of the distillation InfoNCE")
    distill_cosine_weight: float = Field(1.0, ge=0)
    distill_contrastive_weight: float = Field(1.0, ge=0)
    aux_i2i_weight: float = Field(0.0, ge=0, description="stage 2: auxiliary co-engagement i2i InfoNCE (content "
                                  "training's i2i task); 0 = off. Off by default: it raises behaviour-pair i2i "
                                  "recall but cost 0.027 ranker AUC on the synthetic world (BENCHMARKS.md, CRE "
                                  "ablations)")
    id2item_seq2item_weight: float = Field(1.0, ge=0, description="stage 2 keeps the seq2item loss at this "
                                           "weight (multi-task), so distillation does not undo stage 1; 0 = off")
    content_anchor_weight: float = Field(1.0, ge=0, description="both stages: 1 - cos(each item's embedding, "
                                         "its content-model embedding), keeps content perception; 0 = off")
    teacher_weights: dict[str, float] = Field(default_factory=dict, description="teacher -> loss weight "
                                                                                 "(default 1 each)")
    pairs: PairConfig = Field(default_factory=PairConfig, description="the content stage's pair config (aux i2i "
                                                                      "pairs; its held-out i2i pairs are evaluated)")
    # bookkeeping
    eval_max_queries: int = Field(500, gt=0)
    checkpoint_every: int = Field(50, gt=0)
    log_every: int = Field(25, gt=0)
    seed: int = 0
    num_threads: int | None = Field(1, ge=1, description="torch CPU threads while training. 1 (default) is "
                                    "bitwise reproducible run to run; None = every core (on 2 cores 1.7x faster, "
                                    "but weights then differ between runs by ~4e-4)")
    infer_batch_size: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "CREConfig":
        bad = set(self.sequence_mix) - set(SEQUENCE_KINDS)
        if bad:
            raise ValueError(f"sequence_mix: unknown sequence kinds {sorted(bad)}; expected {list(SEQUENCE_KINDS)}")
        if any(v < 0 for v in self.sequence_mix.values()) or (self.seq2item_steps
                                                               and sum(self.sequence_mix.values()) <= 0):
            raise ValueError(f"sequence_mix weights must be >= 0 with a positive sum, got {self.sequence_mix}")
        if self.distill_cosine_weight + self.distill_contrastive_weight <= 0:
            raise ValueError("distill_cosine_weight and distill_contrastive_weight are both 0")
        if any(v < 0 for v in self.teacher_weights.values()):
            raise ValueError(f"teacher_weights must be >= 0, got {self.teacher_weights}")
        if self.min_history > self.history_len:
            raise ValueError(f"min_history={self.min_history} exceeds history_len={self.history_len}")
        return self

    @property
    def total_steps(self) -> int:
        return self.seq2item_steps + self.id2item_steps

    @property
    def kinds(self) -> list[str]:
        return [k for k in SEQUENCE_KINDS if self.sequence_mix.get(k, 0) > 0]

    def eval_config(self) -> CREEvalConfig:
        return CREEvalConfig(history_len=self.history_len, min_history=self.min_history,
                             max_lookback=self.max_lookback, max_queries=self.eval_max_queries, pairs=self.pairs,
                             seed=self.seed)


_RESUME_IGNORES = {"eval_max_queries", "checkpoint_every", "log_every", "num_threads", "infer_batch_size"}


@dataclass
class CREResult:
    model_dir: Path
    metrics: dict[str, float]
    steps_per_sec: float
    heads_path: Path | None = None
    info: dict = field(default_factory=dict)


# ---- projection heads -----------------------------------------------------------------------------------------
class ProjectionHead(nn.Module):
    """Student item embedding [B, D] -> teacher space [B, Dt] (L2-normalised): Linear-GELU-Linear, or one Linear
    when hidden = 0. A linear head makes the student embedding itself carry the teacher's geometry; an MLP head
    can memorise the teacher from small differences between student vectors and leave the embedding as it was."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.dims = (in_dim, hidden, out_dim)
        self.net = (nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)) if hidden
                    else nn.Sequential(nn.Linear(in_dim, out_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


def save_heads(heads: nn.ModuleDict, path: str | Path) -> Path:
    """One safetensors file (temp + os.replace): '<teacher>.<param>' tensors, dims in the metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, h in heads.items()
             for k, v in h.state_dict().items()}
    meta = {"heads": json.dumps({name: list(h.dims) for name, h in heads.items()})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_heads(path: str | Path, device: str | torch.device = "cpu") -> nn.ModuleDict:
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), "pt") as f:
        dims = json.loads(f.metadata()["heads"])
    state = load_file(str(path))
    heads = nn.ModuleDict({name: ProjectionHead(*d) for name, d in dims.items()})
    for name, h in heads.items():
        h.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")})
    return heads.to(device).eval()


@torch.no_grad()
def project(heads: nn.ModuleDict, vectors: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Student vectors [N, D] -> {teacher: [N, Dt]} through each head (on the heads' device)."""
    out = {}
    for name, h in heads.items():
        dev = next(h.parameters()).device
        parts = [h(torch.as_tensor(vectors[s:s + batch_size], dtype=torch.float32, device=dev)).cpu().numpy()
                 for s in range(0, len(vectors), batch_size)]
        out[name] = np.concatenate(parts) if parts else np.zeros((0, h.dims[2]), np.float32)
    return out


# ---- data -----------------------------------------------------------------------------------------------------
def aux_i2i_pairs(ds: Dataset, eval_targets: pd.DataFrame, cfg: PairConfig) -> tuple[pd.DataFrame, set]:
    """Co-engagement pairs for the auxiliary i2i loss: built as the content trainer builds them (train split)
    but (1) from interactions without the seq2item evaluation targets (each user's last train positive), and
    (2) without any pair touching an item the content stage held out for its i2i evaluation.
    -> (pairs[query, target], held-out items)."""
    canonical = build_i2i_pairs(ds, cfg)
    held = set(canonical.holdout["query"].tolist())
    key = ["user_id", "item_id", "timestamp"]
    inter = ds.interactions.merge(eval_targets[key].drop_duplicates().assign(_eval=True), on=key, how="left")
    reduced = Dataset(ds.manifest, ds.items, ds.interactions.loc[inter["_eval"].isna().to_numpy()])
    ps = build_i2i_pairs(reduced, cfg.model_copy(update={"holdout_fraction": 0.0}))
    pairs = ps.train[["query", "target"]]
    pairs = pairs.loc[~pairs["query"].isin(held) & ~pairs["target"].isin(held)].reset_index(drop=True)
    return pairs, held


def history_query(emb: torch.Tensor, rows: np.ndarray, hist: np.ndarray, live: np.ndarray,
                  bank: torch.Tensor | None) -> torch.Tensor:
    """Seq2item queries: the mean of the history items' embeddings (SAIL's default query) -> [B, D].

    emb [U, D]: embeddings (with gradients) of the sorted unique item rows `rows`; hist [B, L]: history item rows,
    -1 = padding; live [B, L]: history slots taken from `emb` (each live row must be in `rows`); the other valid
    slots are read from `bank` [N, D] (no gradient; required unless every valid slot is live)."""
    valid = hist >= 0  # (B, L)
    if (live & ~valid).any():
        raise ValueError("live history slots must be valid (not padding)")
    if not valid.any(1).all():
        raise ValueError("every sequence needs at least one history item")
    dev = emb.device
    h = emb[torch.as_tensor(np.searchsorted(rows, np.where(live, hist, rows[0])), device=dev)]  # (B, L, D)
    if (valid & ~live).any():
        if bank is None:
            raise ValueError("history slots that are not live need the item bank")
        h = torch.where(torch.as_tensor(live, device=dev)[..., None], h,
                        bank[torch.as_tensor(np.maximum(hist, 0), device=dev)].to(h.dtype))
    w = torch.as_tensor(valid, device=dev, dtype=h.dtype)[..., None]  # (B, L, 1)
    return (h * w).sum(1) / w.sum(1)  # (B, D)


@dataclass
class FrozenOutputs:
    """What a frozen fusion model gives each item, computed once: raw [role] -> [N, D] output before the item
    memory and normalisation; memory_inputs [N, F] the item memory's input features (no field dropout)."""

    raw: dict[str, torch.Tensor]
    memory_inputs: torch.Tensor


@torch.no_grad()
def frozen_outputs(model: OmniEmbeddingModel, encoded: EncodedItems, roles: list[str], batch_size: int,
                   device: torch.device) -> FrozenOutputs:
    """Run the model (with its item memory) once over every item, in eval mode, for each role."""
    if model.memory is None:
        raise ValueError("frozen_outputs needs a model with an item memory (OmniEmbeddingModel.with_memory)")
    was_training = model.training
    model.eval()
    raw: dict[str, list[torch.Tensor]] = {r: [] for r in roles}
    inputs = []
    for s in range(0, len(encoded), batch_size):
        batch = collate(encoded, np.arange(s, min(len(encoded), s + batch_size)), device)
        for r in roles:
            r_raw, _, _, tmask = model.content_raw(batch, role=r, task=ITEM_TASK)
            raw[r].append(r_raw)
        inputs.append(model.memory.features(batch, tmask))
    model.train(was_training)
    return FrozenOutputs({r: torch.cat(v) for r, v in raw.items()}, torch.cat(inputs))


def _fingerprint(*arrays, files: tuple[Path, ...] = (), text: str = "") -> str:
    """Short hash of what a run depends on besides its config (data, teachers, base weights, encoders)."""
    h = hashlib.sha256(text.encode())
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def _comparable(cfg: CREConfig) -> dict:
    return {k: v for k, v in cfg.model_dump().items() if k not in _RESUME_IGNORES}


def lr_factor(step: int, cfg: CREConfig) -> float:
    """Multiplier of every group's peak lr at `step`: per stage, 1) linear warmup, 2) cosine decay to min_lr."""
    start, n = (0, cfg.seq2item_steps) if step < cfg.seq2item_steps else (cfg.seq2item_steps, cfg.id2item_steps)
    k = step - start
    if k < cfg.warmup_steps:
        return (k + 1) / (cfg.warmup_steps + 1)
    floor = cfg.min_lr / cfg.lr
    ratio = min(1.0, (k - cfg.warmup_steps) / max(1, n - cfg.warmup_steps))
    return floor + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1.0 - floor)


# ---- the run --------------------------------------------------------------------------------------------------
def run_cre(ds: Dataset, encoded: EncodedItems, base_model_dir: str | Path, teachers: dict[str, pd.DataFrame],
            cfg: CREConfig | None, out_dir: str | Path, device: str = "auto",
            on_step: Callable[[int, dict], None] | None = None) -> CREResult:
    """Seq2item then ID2item on top of the content model in `base_model_dir`; teachers: name -> item table
    (item_id, embedding: L2-normalised teacher item-ID vectors, e.g. TeacherResult.item_embeddings)."""
    cfg = cfg or CREConfig()
    out_dir = Path(out_dir)
    model_dir, heads_path = out_dir / "model", out_dir / HEADS_NAME
    base_model_dir = Path(base_model_dir)
    if not teachers and cfg.id2item_steps:
        raise ValueError("run_cre: id2item_steps > 0 but no teachers were given")
    tmat = {name: teacher_matrix(t, name) for name, t in sorted(teachers.items())}
    unknown = set(cfg.teacher_weights) - set(tmat)
    if unknown:
        raise ValueError(f"teacher_weights name teachers {sorted(unknown)} that were not given ({sorted(tmat)})")
    history_events, eval_targets = seq2item_events(ds)
    fingerprint = _fingerprint(encoded.item_ids, encoded.text.tokens.shape, history_events["item_id"].to_numpy(),
                               history_events["user_id"].to_numpy(), eval_targets["item_id"].to_numpy(),
                               *[a for name in tmat for a in tmat[name]],
                               files=(base_model_dir / "model.safetensors",),
                               text=json.dumps(encoded.info, sort_keys=True, default=str))

    # -- a finished run with the same inputs is not trained again
    summary_path = out_dir / SUMMARY_NAME
    if summary_path.is_file() and (model_dir / "config.json").is_file():
        done = json.loads(summary_path.read_text())
        if done.get("config") == _comparable(cfg) and done.get("fingerprint") == fingerprint:
            log.info("CRE already finished in %s", out_dir)
            return CREResult(model_dir, done["metrics"], done["steps_per_sec"],
                             heads_path if heads_path.is_file() else None, done.get("info", {}))

    dev = resolve_device(device)
    prev_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(cfg.num_threads or max(1, os.cpu_count() or 1))
    seed_everything(cfg.seed)
    try:
        return _train(ds, encoded, base_model_dir, tmat, cfg, out_dir, dev, on_step, history_events, eval_targets,
                      fingerprint)
    finally:
        torch.set_num_threads(prev_threads)


def _train(ds, encoded, base_model_dir, tmat, cfg, out_dir, dev, on_step, history_events, eval_targets,
           fingerprint) -> CREResult:
    ckpt_dir, model_dir, heads_path = out_dir / "checkpoint", out_dir / "model", out_dir / HEADS_NAME
    model = OmniEmbeddingModel.from_pretrained(base_model_dir, dev)
    if model.config.text_dim != encoded.text.tokens.shape[-1]:
        raise ValueError(f"base model expects text_dim={model.config.text_dim}, the encoded items have "
                         f"{encoded.text.tokens.shape[-1]}")
    if not cfg.finetune_fusion and not cfg.memory_hidden:
        raise ValueError("CRE with finetune_fusion=false trains only the item memory: set memory_hidden > 0")
    if cfg.memory_hidden:
        model = model.with_memory(cfg.memory_hidden)  # zero output: base_vectors below are the content model's
    roles = [ITEM_ROLE] + (["query"] if cfg.id2item_steps and cfg.aux_i2i_weight > 0 else [])
    frozen = None if cfg.finetune_fusion else frozen_outputs(model, encoded, roles, cfg.infer_batch_size, dev)
    if frozen is not None:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("memory."))
    D, N = model.config.embed_dim, len(encoded)
    item_ids = np.asarray(encoded.item_ids, dtype=np.int64)
    row_of = pd.Index(item_ids)
    embed_all = lambda: embed_items(model, encoded, cfg.infer_batch_size, str(dev), role=ITEM_ROLE,  # noqa: E731
                                    task=ITEM_TASK)
    base_vectors = embed_all()  # [N, D] the content model: filtered sequences, bank at step 0, "before" metrics

    # -- data 1: seq2item sequences (TRAIN positives minus each user's last) -> item rows
    events = history_events.loc[history_events["item_id"].isin(row_of)]
    seqs = {}
    if cfg.filter_by == "content":
        filter_vectors = base_vectors
    else:  # a teacher's item-ID vectors; items outside its vocabulary get 0 (ranked last)
        if cfg.filter_by not in tmat:
            raise ValueError(f"filter_by={cfg.filter_by!r}: expected 'content' or a teacher name {sorted(tmat)}")
        ids, vec = tmat[cfg.filter_by]
        filter_vectors = np.zeros((N, vec.shape[1]), np.float32)
        rows = row_of.get_indexer(ids)
        filter_vectors[rows[rows >= 0]] = vec[rows >= 0]
    for kind in cfg.kinds if cfg.seq2item_steps or (cfg.id2item_steps and cfg.id2item_seq2item_weight) else []:
        s = build_sequences(events, kind, cfg.history_len, item_ids, filter_vectors, cfg.min_history,
                            cfg.max_lookback, seed=cfg.seed)
        if len(s) >= 2:
            seqs[kind] = (row_of.get_indexer(s.history.reshape(-1)).reshape(s.history.shape),
                          row_of.get_indexer(s.target), s)
    if cfg.seq2item_steps and not seqs:
        raise ValueError("no seq2item sequences: no user has enough train positives "
                         f"(min_history={cfg.min_history}); lower min_history or set seq2item_steps=0")
    mix = {k: cfg.sequence_mix[k] for k in seqs}
    mix_p = np.array(list(mix.values())) / sum(mix.values()) if mix else np.zeros(0)

    # -- data 2: teachers (vocab ∩ encoded items) and auxiliary i2i pairs
    t_rows, t_vec, in_vocab = {}, {}, {}
    for name, (ids, vec) in tmat.items():
        rows = row_of.get_indexer(ids)
        if (rows < 0).any():
            log.warning("teacher %s: %d of %d items have no encoder output; skipped", name, int((rows < 0).sum()),
                        len(rows))
        full = np.zeros((N, vec.shape[1]), np.float32)
        full[rows[rows >= 0]] = vec[rows >= 0]
        t_vec[name] = torch.as_tensor(full, device=dev)
        in_vocab[name] = np.zeros(N, bool)
        in_vocab[name][rows[rows >= 0]] = True
        t_rows[name] = rows[rows >= 0]
    distill_rows = np.flatnonzero(np.logical_or.reduce(list(in_vocab.values()))) if in_vocab else np.zeros(0, int)
    if cfg.id2item_steps and len(distill_rows) < 2:
        raise ValueError("ID2item: fewer than 2 encoded items have a teacher vector")
    aux_q = aux_t = np.zeros(0, np.int64)
    if cfg.id2item_steps and cfg.aux_i2i_weight > 0:
        pairs, _ = aux_i2i_pairs(ds, eval_targets, cfg.pairs)
        pairs = pairs.loc[pairs["query"].isin(row_of) & pairs["target"].isin(row_of)]
        aux_q, aux_t = row_of.get_indexer(pairs["query"]), row_of.get_indexer(pairs["target"])
        if len(aux_q) < 2:
            log.warning("ID2item: no co-engagement pairs for the auxiliary i2i loss; it is skipped")
    use_aux = len(aux_q) >= 2 and cfg.aux_i2i_weight > 0
    info = {"sequences": {k: v[2].info for k, v in seqs.items()}, "aux_pairs": int(len(aux_q)),
            "teacher_items": {k: int(len(v)) for k, v in t_rows.items()}, "distill_items": int(len(distill_rows)),
            "cold_items": int(N - len(distill_rows)), "items": int(N)}
    log.info("CRE data: %s", info)

    # -- heads, losses, optimizer
    dims = model.config.all_dims
    heads = nn.ModuleDict({name: ProjectionHead(D, cfg.head_hidden, vec.shape[1])
                           for name, (_, vec) in tmat.items()}).to(dev)
    seq_nce = InfoNCELoss(None, keys=list(SEQUENCE_KINDS), temperature=cfg.temperature, symmetric=False)
    aux_nce = InfoNCELoss(None, keys=["i2i"], temperature=cfg.temperature, symmetric=True)
    criteria = nn.ModuleDict({"seq2item": seq_nce, "aux_i2i": aux_nce, **{
        f"distill_{name}": DistillationLoss(None, heads[name], cfg.distill_cosine_weight,
                                            cfg.distill_contrastive_weight, cfg.distill_temperature)
        for name in tmat}}).to(dev)
    seq_loss, aux_loss = MatryoshkaLoss(seq_nce, dims), MatryoshkaLoss(aux_nce, dims)
    temps = [p for n, p in criteria.named_parameters() if "log_temperature" in n]
    memory = {id(p) for p in (model.memory.parameters() if model.memory is not None else [])}
    mparams = [p for p in model.parameters() if p.requires_grad and id(p) not in memory]
    memparams = [p for p in model.parameters() if p.requires_grad and id(p) in memory]
    hparams = list(heads.parameters())
    groups = [(cfg.lr, [p for p in mparams if p.dim() >= 2], cfg.weight_decay),
              (cfg.lr, [p for p in mparams if p.dim() < 2] + temps, 0.0),
              (cfg.memory_lr, [p for p in memparams if p.dim() >= 2], cfg.weight_decay),
              (cfg.memory_lr, [p for p in memparams if p.dim() < 2], 0.0),
              (cfg.head_lr, [p for p in hparams if p.dim() >= 2], cfg.weight_decay),
              (cfg.head_lr, [p for p in hparams if p.dim() < 2], 0.0)]
    groups = [g for g in groups if g[1]]
    optimizer = torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for lr, ps, wd in groups],
                                  betas=(0.9, 0.98))
    peak = [lr for lr, _, _ in groups]
    clip_params = mparams + memparams + hparams + temps
    use_bank = cfg.finetune_fusion and cfg.history_grad < cfg.history_len  # frozen: every item has gradients
    bank = torch.as_tensor(base_vectors, device=dev) if use_bank else None

    # -- resume
    step, history = 0, []
    state_path = ckpt_dir / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, map_location=dev, weights_only=False)
        if state["config"] != _comparable(cfg) or state["fingerprint"] != fingerprint:
            diff = sorted(k for k in state["config"] if state["config"][k] != _comparable(cfg).get(k))
            raise ValueError(f"checkpoint {ckpt_dir} was written with a different config (keys {diff}) or inputs "
                             f"(fingerprint {state['fingerprint']} vs {fingerprint}); delete it or rerun the same")
        model.load_state_dict(OmniEmbeddingModel.from_pretrained(ckpt_dir).state_dict())
        criteria.load_state_dict(state["criteria"])
        optimizer.load_state_dict(state["optimizer"])
        bank = state["bank"].to(dev) if state["bank"] is not None else None
        step, history = state["step"], state["history"]
        log.info("CRE resumed from %s at step %d", ckpt_dir, step)

    def save_checkpoint() -> None:
        with atomic_directory(ckpt_dir) as tmp:
            model.save_pretrained(tmp)
            torch.save({"optimizer": optimizer.state_dict(), "criteria": criteria.state_dict(),
                        "bank": bank.cpu() if bank is not None else None, "step": step, "history": history,
                        "config": _comparable(cfg), "fingerprint": fingerprint}, tmp / "state.pt")

    def embed(rows: np.ndarray, role: str) -> torch.Tensor:
        """Item embeddings [len(rows), D] with gradients, as the model computes them (frozen: cached fusion
        output + the item memory on cached inputs, which is the same function)."""
        if frozen is None:
            return model(collate(encoded, rows, dev), role=role, task=ITEM_TASK).embedding
        r = torch.as_tensor(rows, device=dev)
        return F.normalize(frozen.raw[role][r] + model.memory.net(frozen.memory_inputs[r]), dim=-1)
    base_t = torch.as_tensor(base_vectors, device=dev)  # (N, D) the content model's item embeddings

    def anchor(emb: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, dict]:
        """Content anchor: 1 - cos(each item's embedding, its content-model embedding), 0 before CRE moves it."""
        if cfg.content_anchor_weight <= 0:
            return emb.new_zeros(()), {}
        l_a = (1.0 - (emb * base_t[torch.as_tensor(rows, device=dev)]).sum(-1)).mean()
        return cfg.content_anchor_weight * l_a, {"anchor": float(l_a.detach())}
    at = lambda live, rows: torch.as_tensor(np.searchsorted(live, rows), device=dev)  # noqa: E731

    def seq2item_step(rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        kind = list(mix)[rng.choice(len(mix), p=mix_p)]
        hist_all, tgt_all, _ = seqs[kind]
        pick = rng.choice(len(tgt_all), size=min(cfg.batch_size, len(tgt_all)), replace=False)
        hist, tgt = hist_all[pick], tgt_all[pick]  # (B, L) rows, -1 = padding; (B,)
        valid = hist >= 0
        score = np.where(valid, rng.random(hist.shape), -1.0)
        live = np.zeros_like(valid)
        n_live = cfg.history_grad if use_bank else hist.shape[1]
        np.put_along_axis(live, np.argsort(-score, axis=1, kind="stable")[:, :n_live], True, axis=1)
        live &= valid  # (B, L) embedded with gradients this step
        rows = np.unique(np.concatenate([tgt, hist[live]]))
        emb = embed(rows, ITEM_ROLE)  # (U, D)
        query = history_query(emb, rows, hist, live, bank)  # (B, D) mean of the history embeddings
        target = emb[at(rows, tgt)]  # (B, D)
        labels = torch.as_tensor(np.stack([-(pick + 1), item_ids[tgt]], 1), device=dev)
        loss = seq_loss.compute_loss_from_embeddings([query, target], labels, key=kind)
        l_a, parts = anchor(emb, rows)
        return loss + l_a, {"dataset": f"seq2item_{kind}", "items_embedded": int(len(rows)), **parts}

    def id2item_step(rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        d_rows = distill_rows[rng.choice(len(distill_rows), min(cfg.batch_size, len(distill_rows)), False)]
        if use_aux:
            k = rng.choice(len(aux_q), min(cfg.aux_batch_size, len(aux_q)), replace=False)
            swap = rng.random(len(k)) < 0.5  # either item may be the query
            q_rows, t_rows_aux = np.where(swap, aux_t[k], aux_q[k]), np.where(swap, aux_q[k], aux_t[k])
        else:
            q_rows = t_rows_aux = np.zeros(0, np.int64)
        rows = np.unique(np.concatenate([d_rows, t_rows_aux]))
        emb = embed(rows, ITEM_ROLE)  # (U, D) target role: the table's vectors
        student = emb[at(rows, d_rows)]  # (B, D)
        loss, parts = emb.new_zeros(()), {}
        for name in tmat:
            m = in_vocab[name][d_rows]
            if m.sum() < 2:
                continue
            crit = criteria[f"distill_{name}"]
            l_t = crit.compute_loss_from_embeddings([student[torch.as_tensor(m, device=dev)]],
                                                    t_vec[name][torch.as_tensor(d_rows[m], device=dev)])
            loss = loss + cfg.teacher_weights.get(name, 1.0) * l_t
            parts.update({f"distill_{name}/{k}": v for k, v in crit.last.items()})
        if use_aux:
            q = embed(q_rows, "query")  # (A, D)
            labels = torch.as_tensor(np.stack([item_ids[q_rows], item_ids[t_rows_aux]], 1), device=dev)
            l_aux = aux_loss.compute_loss_from_embeddings([q, emb[at(rows, t_rows_aux)]], labels, key="i2i")
            loss = loss + cfg.aux_i2i_weight * l_aux
            parts["aux_i2i"] = float(l_aux.detach())
        l_a, a_parts = anchor(emb, rows)
        loss = loss + l_a
        parts.update(a_parts)
        if seqs and cfg.id2item_seq2item_weight > 0:
            l_s, s_parts = seq2item_step(rng)
            loss = loss + cfg.id2item_seq2item_weight * l_s
            parts["seq2item"] = float(l_s.detach())
        return loss, {"dataset": "id2item", **parts}

    # -- train
    total, start_step, train_time, running = cfg.total_steps, step, 0.0, None
    stage_time = {"seq2item": [0.0, 0], "id2item": [0.0, 0]}
    model.train()
    heads.train()
    with tqdm(total=total, initial=step, desc="cre", disable=None) as bar:
        while step < total:
            t0 = time.perf_counter()
            stage = "seq2item" if step < cfg.seq2item_steps else "id2item"
            if stage == "seq2item" and bank is not None and step > 0 and step % cfg.bank_refresh_every == 0:
                bank = torch.as_tensor(embed_all(), device=dev)  # (N, D), no gradient
            for group, lr in zip(optimizer.param_groups, peak):
                group["lr"] = lr * lr_factor(step, cfg)
            rng = np.random.default_rng([cfg.seed, step])  # the batch of step s depends only on (seed, s)
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout + field dropout of this step
            loss, parts = seq2item_step(rng) if stage == "seq2item" else id2item_step(rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
            optimizer.step()
            step += 1
            dt = time.perf_counter() - t0
            train_time += dt
            stage_time[stage][0] += dt
            stage_time[stage][1] += 1
            lossf = float(loss.detach())
            running = lossf if running is None else 0.9 * running + 0.1 * lossf
            history.append({"step": step, "stage": stage, "loss": lossf, **parts})
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", stage=stage)
            if step % cfg.log_every == 0 or step == total:
                log.info("CRE step %d/%d %s loss %.4f (avg %.4f) %.2f steps/s", step, total, stage, lossf, running,
                         (step - start_step) / max(train_time, 1e-9))
            if step % cfg.checkpoint_every == 0 or step == total:
                save_checkpoint()
            if on_step is not None:
                on_step(step, history[-1])
    steps_run = step - start_step
    steps_per_sec = steps_run / train_time if train_time > 0 else float("nan")

    # -- final model + heads, metrics before (content model) and after
    model.eval()
    heads.eval()
    with atomic_directory(model_dir) as tmp:
        model.save_pretrained(tmp)
    save_heads(heads, heads_path)
    t0 = time.perf_counter()
    evaluators = build_cre_evaluators(ds, item_ids, {k: _table(*v) for k, v in tmat.items()}, cfg.eval_config(),
                                      item_ids, base_vectors)
    after_vectors = embed_all()
    metrics = run_cre_evaluators(evaluators, ItemSpace(item_ids, after_vectors, project(heads, after_vectors)))
    metrics.update(run_cre_evaluators(evaluators, ItemSpace(item_ids, base_vectors), prefix="before/"))
    for st in ("seq2item", "id2item"):
        tail = [h["loss"] for h in history if h["stage"] == st][-25:]
        if tail:
            metrics[f"train/{st}_loss"] = float(np.mean(tail))
    metrics.update({"train/steps": float(step), "cold/items": float(info["cold_items"]),
                    **{f"temperature/seq2item_{k}": seq_nce.temperature(k).item() for k in seqs},
                    **({"temperature/aux_i2i": aux_nce.temperature("i2i").item()} if use_aux else {})})
    info.update({"eval_seconds": time.perf_counter() - t0, "steps_this_run": steps_run,
                 "stage_steps_per_sec": {k: (v[1] / v[0] if v[0] > 0 else None) for k, v in stage_time.items()},
                 "loss": {"seq2item": seq_loss.get_config_dict(), "aux_i2i": aux_loss.get_config_dict(),
                          **{n: criteria[f"distill_{n}"].get_config_dict() for n in tmat}}})
    summary = {"metrics": metrics, "steps_per_sec": steps_per_sec, "info": info, "config": _comparable(cfg),
               "fingerprint": fingerprint}
    tmp = out_dir / f".{SUMMARY_NAME}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, out_dir / SUMMARY_NAME)
    log.info("CRE done: %s", {k: round(v, 4) for k, v in metrics.items() if not k.startswith("before/")})
    return CREResult(model_dir, metrics, steps_per_sec, heads_path, info)


def _table(ids: np.ndarray, vectors: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"item_id": ids, "embedding": list(vectors)})


__all__ = ["CREConfig", "CREResult", "run_cre", "history_query", "ProjectionHead", "save_heads", "load_heads",
           "project", "aux_i2i_pairs", "lr_factor"]
