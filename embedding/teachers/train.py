"""Train the teachers through TorchRec DistributedModelParallel (one process, or N: embedding.teachers.launch).

Reads top to bottom: process group and device, sharding (the planner's plan + fused row-wise Adagrad for the
tables), the dense optimizer, then one function per teacher: data -> model -> DMP -> loop -> export -> metrics.

Data parallel over ranks: every rank draws the same shuffled order and takes rows rank::world_size of each
GLOBAL batch (`batch` in the config is global), so 1 and N processes see the same examples per step. Embedding
tables are sharded TABLE_WISE on CPU (row-wise needs reduce-scatter, which gloo lacks) and as the planner chooses
on GPU; dense parameters are replicated and averaged by the DDP wrapper DMP adds. Rank 0 writes the export;
every rank returns the result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torch import nn
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.types import KernelConfig, TopologyFactory, TrainerConfig
from torchrec.distributed.types import ShardingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from tqdm.auto import tqdm

from embedding.teachers import export as ex
from embedding.teachers import launch
from embedding.teachers.config import TeacherConfig
from embedding.teachers.data import (
    TeacherData,
    global_batches,
    kjt,
    last_sequences,
    n_steps,
    save_vocabs,
    sequence_windows,
    teacher_data,
)
from embedding.teachers.evaluate import evaluate_next_item, evaluate_popularity, next_item_task, task_info
from embedding.teachers.sasrec import CAND_FEATURE, SEQ_FEATURE, SASRec, SASRecTrain, sasrec_tables
from embedding.teachers.two_tower import (
    ITEM_FEATURE,
    NEG_FEATURE,
    USER_FEATURE,
    TwoTower,
    TwoTowerTrain,
    two_tower_tables,
)
from recsys.data.dataset import Dataset
from recsys.io import write_json
from recsys.runtime import cpu_threads, deterministic_kernels, resolve_device, seeded

log = logging.getLogger(__name__)

ID_SUBDIR = "id"
SEQUENCE_SUBDIR = "sequence"
TEACHER_KINDS = (ID_SUBDIR, SEQUENCE_SUBDIR)
REPORT_NAME = "teachers_report.json"
EXPORT_BATCH = 4096


@dataclass
class TeacherResult:
    """What a teacher produced. Embedding frames follow embedding.teachers.export (L2-normalised vectors)."""

    kind: str                                   # "id" | "sequence"
    item_embeddings: pd.DataFrame               # item_id, embedding, model_version, event_timestamp
    metrics: dict[str, float]
    examples_per_sec: float                     # training examples (pairs / next-item positions) per second,
                                                #   all ranks together
    user_embeddings: pd.DataFrame | None = None  # user_id, embedding, ... (sequence: from the full train history)
    model_version: str = ""
    loss_history: list[float] = field(default_factory=list)  # mean training loss per epoch
    out_dir: Path | None = None
    world_size: int = 1


# --- 1. process group and device --------------------------------------------------------------------------------

@dataclass
class DistEnv:
    rank: int
    world_size: int
    device: torch.device


def _join_group(backend: str) -> None:
    """Join the job's process group: the project launcher's store (embedding.teachers.launch), torchrun's (env://,
    its store listens on every interface), or a one-process group of our own."""
    if launch.launched_worker():
        launch.pin_sockets_to_loopback()
        dist.init_process_group(backend=backend, store=launch.client_store(), rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))
    elif all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_PORT")):
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        launch.pin_sockets_to_loopback()
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[DistEnv]:
    """Join the launched job's process group (see `_join_group`), or make a one-process group; nccl on CUDA, gloo
    on CPU.

    A group that already exists is reused and left alone; one created here is destroyed on exit.
    """
    dev = resolve_device(device)
    created = False
    if not dist.is_initialized():
        _join_group("nccl" if dev.type == "cuda" else "gloo")
        created = True
    try:
        if dev.type == "cuda":
            dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
            torch.cuda.set_device(dev)
        yield DistEnv(dist.get_rank(), dist.get_world_size(), dev)
    finally:
        if created:
            dist.destroy_process_group()


# --- 2. sharding and optimizers -------------------------------------------------------------------------------

def sharders(lr: float) -> list:
    """Every table with a fused EXACT_ROWWISE_ADAGRAD optimizer (it steps inside backward)."""
    fused = {"optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD, "learning_rate": lr}
    return [EmbeddingBagCollectionSharder(fused_params=fused), EmbeddingCollectionSharder(fused_params=fused)]


def planner(tables: Sequence[str], world_size: int, device_type: str) -> EmbeddingShardingPlanner:
    """The sharding planner for `world_size` ranks of `device_type`: on CPU every table TABLE_WISE (row-wise needs
    reduce-scatter, which gloo lacks); on GPU the planner chooses (row-wise once a table outgrows one device's
    memory; benchmarks/teachers_plan.py shows the plans)."""
    constraints = ({t: ParameterConstraints(sharding_types=[ShardingType.TABLE_WISE.value]) for t in tables}
                   if device_type == "cpu" else None)
    topology = TopologyFactory.create_topology(
        trainer_config=TrainerConfig(world_size=world_size, local_world_size=world_size),
        kernel_config=KernelConfig(compute_device=device_type))
    return EmbeddingShardingPlanner(topology=topology, constraints=constraints)


def shard(module: nn.Module, tables: list[str], env: DistEnv, lr: float) -> DistributedModelParallel:
    """Wrap `module` in DMP with the planner's plan (agreed by every rank)."""
    shs = sharders(lr)
    plan = planner(tables, env.world_size, env.device.type).collective_plan(module, shs, dist.GroupMember.WORLD)
    return DistributedModelParallel(module, device=env.device, plan=plan, sharders=shs)


def optimizer(model: DistributedModelParallel, dense_lr: float) -> CombinedOptimizer:
    """The tables' fused optimizer (steps inside backward) + Adam for every other parameter."""
    dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(model.named_parameters())),
                                  lambda params: torch.optim.Adam(params, lr=dense_lr))
    return CombinedOptimizer([model.fused_optimizer, dense])


def _mean_over_ranks(x: float, env: DistEnv) -> float:
    t = torch.tensor([x], dtype=torch.float64, device=env.device)
    if env.world_size > 1:
        dist.all_reduce(t)
    return float(t.item()) / env.world_size


def _progress(total: int, desc: str, env: DistEnv):
    return tqdm(total=total, desc=desc, disable=None if env.rank == 0 else True, leave=False)


def _export(kind: str, out_dir: Path | None, env: DistEnv, data: TeacherData, cfg_dump: dict,
            items: pd.DataFrame, users: pd.DataFrame | None, metrics: dict) -> Path | None:
    if out_dir is None:
        return None
    target = Path(out_dir) / kind
    if env.rank == 0:
        target.mkdir(parents=True, exist_ok=True)
        ex.write_embeddings(items, target / ex.ITEM_EMBEDDINGS)
        if users is not None:
            ex.write_embeddings(users, target / ex.USER_EMBEDDINGS)
        save_vocabs(target / ex.VOCAB, items=data.items, users=data.users)
        write_json(target / ex.METRICS, metrics)
        write_json(target / ex.CONFIG, cfg_dump)
    dist.barrier()
    return target


# --- 3. ID-to-item teacher ------------------------------------------------------------------------------------

def _fit(name: str, dmp, opt, epochs: int, steps_per_epoch: int, epoch_steps, env) -> tuple[list[float], float]:
    """The shared loop: `epoch_steps()` yields (loss, loss_value, n_examples) per batch of one epoch.

    Returns the per-epoch mean loss (averaged over ranks) and training examples per second (all ranks)."""
    losses, examples = [], 0
    dmp.train()
    bar = _progress(epochs * steps_per_epoch, name, env)
    t0 = time.perf_counter()
    for _ in range(epochs):
        total, count = 0.0, 0
        for loss, loss_value, n in epoch_steps():
            loss.backward()
            opt.step()
            opt.zero_grad()
            total, count = total + float(loss_value), count + 1
            examples += n
            bar.update(1)
        losses.append(_mean_over_ranks(total / max(count, 1), env))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    elapsed = time.perf_counter() - t0
    bar.close()
    eps = _mean_over_ranks(examples, env) * env.world_size / elapsed
    log.info("%s: %d epochs, %.0f examples/s (%d ranks), loss %.3f -> %.3f", name, epochs, eps, env.world_size,
             losses[0], losses[-1])
    return losses, eps


def train_id_teacher(ds: Dataset, cfg: TeacherConfig | None = None, out_dir: str | Path | None = None
                     ) -> TeacherResult:
    """Train the two-tower ID teacher on train-split positives; export to `<out_dir>/id` (rank 0)."""
    cfg = cfg or TeacherConfig()
    tc = cfg.two_tower
    with (distributed(cfg.device) as env, cpu_threads(cfg.num_threads), seeded(cfg.seed),
          deterministic_kernels()):
        data = teacher_data(ds, cfg.holdout_last)
        users = data.users.lookup(data.fit["user_id"].to_numpy())
        items = data.items.lookup(data.fit["item_id"].to_numpy())
        counts = np.bincount(items, minlength=data.items.num_embeddings).astype(np.float64)
        log_freq = torch.tensor(np.log((counts + 1.0) / (counts + 1.0).sum()), dtype=torch.float32)

        ebc = EmbeddingBagCollection(tables=two_tower_tables(data.users.num_embeddings, data.items.num_embeddings,
                                                             tc.dim), device=torch.device("meta"))
        model = TwoTower(ebc, device=env.device)
        task = TwoTowerTrain(model, tc.loss, tc.temperature,
                             log_freq.to(env.device) if tc.logq and tc.loss == "softmax" else None)
        dmp = shard(task, ["user", "item"], env, tc.lr)
        opt = optimizer(dmp, tc.dense_lr)

        order_rng = np.random.default_rng(cfg.seed)                 # same on every rank
        neg_rng = np.random.default_rng([cfg.seed, env.rank])       # per rank
        n, steps = len(items), n_steps(len(items), tc.batch, env.world_size)
        ones = lambda k: np.ones(k, np.int32)  # noqa: E731
        def id_steps():
            for idx in global_batches(n, tc.batch, order_rng, env.world_size, env.rank):
                b = len(idx)
                neg = (neg_rng.integers(1, data.items.num_embeddings, b), ones(b)) if tc.loss == "bpr" \
                    else (np.zeros(0, np.int64), np.zeros(b, np.int32))
                batch = kjt({USER_FEATURE: (users[idx], ones(b)), ITEM_FEATURE: (items[idx], ones(b)),
                             NEG_FEATURE: neg}, env.device)
                yield (*dmp(batch), b)

        losses, eps = _fit("id teacher", dmp, opt, tc.epochs, steps, id_steps, env)

        # embeddings of every known item and user (each rank feeds the full lists; outputs are identical)
        dmp.eval()
        tower = dmp.module.model
        empty = (np.zeros(0, np.int64), None)

        def embed(feature: str, n_rows: int) -> np.ndarray:
            out = []
            with torch.no_grad():
                for s in range(1, n_rows, EXPORT_BATCH):
                    ids = np.arange(s, min(s + EXPORT_BATCH, n_rows))
                    feats = {f: (ids, ones(len(ids))) if f == feature else (empty[0], np.zeros(len(ids), np.int32))
                             for f in (USER_FEATURE, ITEM_FEATURE, NEG_FEATURE)}
                    u, i, _ = tower(kjt(feats, env.device))
                    out.append((u if feature == USER_FEATURE else i).cpu().numpy())
            return np.concatenate(out) if out else np.zeros((0, tc.dim), np.float32)

        item_vecs = embed(ITEM_FEATURE, data.items.num_embeddings)
        user_vecs = embed(USER_FEATURE, data.users.num_embeddings)
        version = ex.model_version("id-teacher", {**tc.model_dump(), "seed": cfg.seed,
                                                  "holdout_last": cfg.holdout_last},
                                   ds.manifest.content_hash, env.world_size)
        item_df = ex.embedding_table("item_id", data.items.ids, item_vecs, version, data.train_end)
        user_df = ex.embedding_table("user_id", data.users.ids, user_vecs, version, data.train_end)

        metrics = {"train/loss_first_epoch": losses[0], "train/loss_last_epoch": losses[-1],
                   "train/examples_per_sec": eps, "train/world_size": float(env.world_size),
                   "train/examples": float(len(items))}
        if cfg.holdout_last:
            nt = next_item_task(data)
            uvec = user_vecs[data.users.lookup(nt.user_ids) - 1]
            metrics |= evaluate_next_item(uvec, data.items.ids, item_vecs, nt, cfg.ks, cfg.exclude_history, "id")
            metrics |= evaluate_popularity(nt, cfg.ks, cfg.exclude_history)
            metrics |= task_info(nt)
        target = _export(ID_SUBDIR, out_dir, env, data, cfg.model_dump(), item_df, user_df, metrics)
        return TeacherResult("id", item_df, metrics, eps, user_df, version, losses, target, env.world_size)


# --- 4. sequence-to-item teacher ------------------------------------------------------------------------------

def _sequence_batch(wins: list[np.ndarray], max_len: int, n_items: int, num_negatives: int,
                    p_target: np.ndarray, rng: np.random.Generator, device: torch.device):
    """Windows -> (KJT seq/cand, target [B, L] index into cand (-1 = none), log_q [C])."""
    B = len(wins)
    seqs = [w[:-1] for w in wins]
    tgts = [w[1:] for w in wins]
    negs = rng.integers(1, n_items, num_negatives) if num_negatives else np.zeros(0, np.int64)
    cand = np.unique(np.concatenate(tgts + [negs]))                                   # C unique item indices
    target = np.full((B, max_len), -1, dtype=np.int64)
    for b, t in enumerate(tgts):
        target[b, :len(t)] = np.searchsorted(cand, t)
    n_pos = int(sum(len(t) for t in tgts))
    # probability that a candidate is in the set: drawn as one of n_pos targets or one of the negatives
    q = 1.0 - (1.0 - p_target[cand]) ** n_pos * (1.0 - 1.0 / (n_items - 1)) ** num_negatives
    cand_len = np.array([len(c) for c in np.array_split(np.arange(len(cand)), B)], dtype=np.int32)
    feats = {SEQ_FEATURE: (np.concatenate(seqs), np.array([len(s) for s in seqs], np.int32)),
             CAND_FEATURE: (cand, cand_len)}
    return (kjt(feats, device), torch.from_numpy(target).to(device),
            torch.tensor(np.log(np.maximum(q, 1e-12)), dtype=torch.float32, device=device), n_pos)


def train_sequence_teacher(ds: Dataset, cfg: TeacherConfig | None = None, out_dir: str | Path | None = None,
                           id_teacher: TeacherResult | None = None) -> TeacherResult:
    """Train the SASRec sequence teacher on train-split positives; export to `<out_dir>/sequence` (rank 0).

    With `id_teacher` (trained with the same holdout) its next-item metrics are reported alongside ("id/...").
    """
    cfg = cfg or TeacherConfig()
    sc = cfg.sasrec
    with (distributed(cfg.device) as env, cpu_threads(cfg.num_threads), seeded(cfg.seed),
          deterministic_kernels()):
        data = teacher_data(ds, cfg.holdout_last)
        n_items = data.items.num_embeddings
        wins = sequence_windows(data.fit, data.items, sc.max_len)
        if not wins:
            raise ValueError("sequence teacher: no user has two train positives")
        tcounts = np.bincount(np.concatenate([w[1:] for w in wins]), minlength=n_items).astype(np.float64)
        p_target = tcounts / tcounts.sum()

        ec = EmbeddingCollection(tables=sasrec_tables(n_items, sc.dim), device=torch.device("meta"))
        model = SASRec(ec, sc.max_len, sc.layers, sc.heads, sc.dropout, device=env.device)
        dmp = shard(SASRecTrain(model, sc.temperature), ["item"], env, sc.lr)
        opt = optimizer(dmp, sc.dense_lr)

        order_rng = np.random.default_rng(cfg.seed)
        neg_rng = np.random.default_rng([cfg.seed, env.rank])
        steps = n_steps(len(wins), sc.batch, env.world_size)
        def sequence_steps():
            for idx in global_batches(len(wins), sc.batch, order_rng, env.world_size, env.rank):
                feats, target, log_q, n_pos = _sequence_batch([wins[i] for i in idx], sc.max_len, n_items,
                                                              sc.num_negatives, p_target, neg_rng, env.device)
                yield (*dmp(feats, target, log_q if sc.logq else None), n_pos)

        losses, eps = _fit("sequence teacher", dmp, opt, sc.epochs, steps, sequence_steps, env)

        dmp.eval()
        net: SASRec = dmp.module.model

        def embed_items() -> np.ndarray:
            out = []
            with torch.no_grad():
                for s in range(1, n_items, EXPORT_BATCH):
                    ids = np.arange(s, min(s + EXPORT_BATCH, n_items))
                    feats = {SEQ_FEATURE: (np.zeros(0, np.int64), np.zeros(len(ids), np.int32)),
                             CAND_FEATURE: (ids, np.ones(len(ids), np.int32))}
                    out.append(net.embed_items(kjt(feats, env.device)).cpu().numpy())
            return np.concatenate(out)

        def embed_sequences(seqs: list[np.ndarray]) -> np.ndarray:
            out = []
            with torch.no_grad():
                for s in range(0, len(seqs), 256):
                    part = seqs[s:s + 256]
                    feats = {SEQ_FEATURE: (np.concatenate(part), np.array([len(p) for p in part], np.int32)),
                             CAND_FEATURE: (np.zeros(0, np.int64), np.zeros(len(part), np.int32))}
                    out.append(net.embed_sequences(kjt(feats, env.device)).cpu().numpy())
            return np.concatenate(out) if out else np.zeros((0, sc.dim), np.float32)

        item_vecs = embed_items()
        user_ids, user_seqs = last_sequences(data.positives, data.items, sc.max_len)   # full train history
        user_vecs = embed_sequences(user_seqs)
        version = ex.model_version("sequence-teacher", {**sc.model_dump(), "seed": cfg.seed,
                                                        "holdout_last": cfg.holdout_last},
                                   ds.manifest.content_hash, env.world_size)
        item_df = ex.embedding_table("item_id", data.items.ids, item_vecs, version, data.train_end)
        user_df = ex.embedding_table("user_id", user_ids, user_vecs, version, data.train_end)

        metrics = {"train/loss_first_epoch": losses[0], "train/loss_last_epoch": losses[-1],
                   "train/examples_per_sec": eps, "train/world_size": float(env.world_size),
                   "train/examples": float(sum(len(w) - 1 for w in wins))}
        if cfg.holdout_last:
            nt = next_item_task(data)
            h_users, h_seqs = last_sequences(data.history, data.items, sc.max_len)
            assert np.array_equal(h_users, nt.user_ids)
            metrics |= evaluate_next_item(embed_sequences(h_seqs), data.items.ids, item_vecs, nt, cfg.ks,
                                          cfg.exclude_history, "sequence")
            metrics |= evaluate_popularity(nt, cfg.ks, cfg.exclude_history)
            metrics |= task_info(nt)
            if id_teacher is not None and id_teacher.user_embeddings is not None:
                id_items = ex.embedding_matrix(id_teacher.item_embeddings)
                uemb = id_teacher.user_embeddings.set_index("user_id")["embedding"].reindex(nt.user_ids)
                uvec = np.stack([v if isinstance(v, np.ndarray) else np.zeros(id_items.shape[1], np.float32)
                                 for v in uemb])
                metrics |= evaluate_next_item(uvec, id_teacher.item_embeddings["item_id"].to_numpy(),
                                              id_items, nt, cfg.ks,
                                              cfg.exclude_history, "id")
        target = _export(SEQUENCE_SUBDIR, out_dir, env, data, cfg.model_dump(), item_df, user_df, metrics)
        return TeacherResult("sequence", item_df, metrics, eps, user_df, version, losses, target, env.world_size)


# --- 5. both teachers -------------------------------------------------------------------------------------------

def train_teachers(ds: Dataset, cfg: TeacherConfig | None = None, out_dir: str | Path | None = None,
                   kinds: Sequence[str] = TEACHER_KINDS) -> dict[str, TeacherResult]:
    """Train the teachers in `kinds` in one process group (the sequence teacher reports the ID teacher's metrics
    beside its own); rank 0 writes `<out_dir>/teachers_report.json` (every metric, model versions, world size).
    In a launched job every rank calls this and gets the same results."""
    cfg = cfg or TeacherConfig()
    unknown = set(kinds) - set(TEACHER_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown teachers {sorted(unknown)}; choose from {list(TEACHER_KINDS)}")
    results: dict[str, TeacherResult] = {}
    with distributed(cfg.device) as env:
        if ID_SUBDIR in kinds:
            results[ID_SUBDIR] = train_id_teacher(ds, cfg, out_dir)
        if SEQUENCE_SUBDIR in kinds:
            results[SEQUENCE_SUBDIR] = train_sequence_teacher(ds, cfg, out_dir, id_teacher=results.get(ID_SUBDIR))
        if env.rank == 0 and out_dir is not None:
            report = {k: r.metrics | {"model_version": r.model_version} for k, r in results.items()}
            write_json(Path(out_dir) / REPORT_NAME, {**report, "world_size": env.world_size})
    return results
