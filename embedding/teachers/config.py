"""Configuration of the TorchRec teachers (embedding.teachers).

Defaults are sized so that both teachers together train in about a minute on the default synthetic world
(~2000 items, 300 users, ~20k train interactions) on two CPU cores. Learning rates come in pairs: `lr` is the
fused row-wise Adagrad rate of the TorchRec embedding tables, `dense_lr` the Adam rate of everything else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TwoTowerConfig(BaseModel):
    """ID-to-item teacher: user-ID tower x item-ID tower retrieval model."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(64, ge=2)                  # embedding width of both ID tables (and of the export)
    epochs: int = Field(10, ge=1)
    batch: int = Field(512, ge=2)               # GLOBAL (user, item) pairs per step, split across ranks
    lr: float = Field(0.05, gt=0)               # fused EXACT_ROWWISE_ADAGRAD rate of the ID tables
    dense_lr: float = Field(3e-3, gt=0)         # Adam rate of the tower projections
    loss: Literal["softmax", "bpr"] = "softmax"  # in-batch sampled softmax (logQ-corrected) or BPR
    temperature: float = Field(0.1, gt=0)       # scores are cosine / temperature
    logq: bool = True                           # subtract log item frequency from in-batch logits (softmax)


class SASRecConfig(BaseModel):
    """Sequence-to-item teacher: causal self-attention over users' item-ID sequences."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(64, ge=2)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    max_len: int = Field(50, ge=2)              # the last max_len items of a sequence are attended to
    epochs: int = Field(15, ge=1)
    batch: int = Field(64, ge=2)                # GLOBAL sequence windows per step, split across ranks
    lr: float = Field(0.05, gt=0)               # fused EXACT_ROWWISE_ADAGRAD rate of the item table
    dense_lr: float = Field(3e-3, gt=0)         # Adam rate of the transformer
    dropout: float = Field(0.2, ge=0, lt=1)
    num_negatives: int = Field(256, ge=0)       # uniform random negatives added to the in-batch targets
    temperature: float = Field(0.1, gt=0)
    logq: bool = True                           # subtract log inclusion probability of each candidate


class TeacherConfig(BaseModel):
    """Both teachers, the seed, the device and how the next-item evaluation is run."""

    model_config = ConfigDict(extra="forbid")

    two_tower: TwoTowerConfig = TwoTowerConfig()
    sasrec: SASRecConfig = SASRecConfig()
    seed: int = 0
    device: str = "auto"                        # "auto" = cuda (nccl) when available, else cpu (gloo)
    # torch intra-op threads while a teacher trains (recsys.runtime.cpu_threads, restored afterwards); None =
    # every core this process may use. One thread is the default: these models are small, and on a shared
    # machine more threads than free cores ran far slower.
    num_threads: int | None = Field(1, ge=1)
    # Leave-last-out inside the train period: each user's last train positive is held out of training and is
    # the next-item target; the earlier ones are the history. False trains on every train positive and
    # reports no metrics.
    holdout_last: bool = True
    exclude_history: bool = True                # mask a user's history items when ranking all items
    ks: list[int] = Field(default_factory=lambda: [10, 50])
