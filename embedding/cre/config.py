"""Configuration of CRE (embedding.cre): the two stages, what learns, the losses of each stage, bookkeeping."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from embedding.cre.sequences import SEQUENCE_KINDS
from embedding.tasks import PairConfig
from recsys.runtime import Precision

# settings that change how a run is observed or how fast it runs, not what it computes: a checkpoint written
# with other values of these is still resumed
_RESUME_IGNORES = {"eval_max_queries", "checkpoint_every", "log_every", "num_threads", "infer_batch_size"}


class CREConfig(BaseModel):
    """Defaults fit the demo budget with the frozen fusion model (finetune_fusion=false): each step is one
    item-memory MLP pass. The loss weights were chosen on the synthetic world by the ranker's AUC with CRE match
    features against content-only ones (README, CRE section), not by the CRE evaluators alone."""

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
    min_lr: float = Field(5e-5, ge=0, description="end of each stage's cosine decay (every group decays to the "
                                                  "same fraction min_lr / lr of its peak)")
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
                                  "recall but cost ranker AUC on the synthetic world (BENCHMARKS.md, CRE "
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
    num_threads: int | None = Field(1, ge=1, description="torch CPU threads while training (None = every core "
                                    "this process may use). 1 (default) is bitwise reproducible run to run; "
                                    "with more threads the weights differ slightly between runs (BENCHMARKS.md)")
    infer_batch_size: int = Field(128, gt=0, description="items per inference batch (benchmarks/fusion_inference.py)")
    precision: Precision = Field("auto", description="training forward precision (recsys.runtime): auto = bf16 "
                                 "autocast where the hardware has native bf16, else fp32; weights, outputs stay fp32")

    @model_validator(mode="after")
    def _check(self) -> CREConfig:
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
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} exceeds lr={self.lr} (the cosine decays from lr to min_lr)")
        return self

    @property
    def total_steps(self) -> int:
        return self.seq2item_steps + self.id2item_steps

    @property
    def kinds(self) -> list[str]:
        return [k for k in SEQUENCE_KINDS if self.sequence_mix.get(k, 0) > 0]

    @property
    def uses_sequences(self) -> bool:
        """Seq2item runs in stage 1, or in stage 2 as its multi-task term."""
        return bool(self.seq2item_steps or (self.id2item_steps and self.id2item_seq2item_weight))

    @property
    def uses_aux_i2i(self) -> bool:
        return bool(self.id2item_steps and self.aux_i2i_weight > 0)

    @property
    def uses_bank(self) -> bool:
        """Fine-tuning embeds only `history_grad` history items per sequence with gradients; the rest come from
        the bank. Frozen: every item is one cheap MLP pass, so every slot has gradients."""
        return self.finetune_fusion and self.history_grad < self.history_len

    def resume_meta(self) -> dict:
        """The settings a checkpoint must have been written with to be resumed (recsys.checkpoint meta)."""
        return {k: v for k, v in self.model_dump().items() if k not in _RESUME_IGNORES}


__all__ = ["CREConfig"]
