"""TorchRec DLRM ranker: a pointwise "is this impression positive" model over a feature frame.

Same interface as :class:`ranking.lgbm.LGBMRanker` (``fit`` / ``predict`` / ``feature_importance`` /
``save`` / ``load``), so ``ranking.experiment`` can run it as extra variants on the same frames.

Model (TorchRec style: KJT in, KeyedTensor out)
- Every ``categorical`` column is a sparse feature with its own table, declared once as an
  ``EmbeddingBagConfig`` (table ``t_<feature>``); the tables form one ``EmbeddingBagCollection``.
- The other ``features`` form the dense vector. ``torchrec.models.dlrm.DLRM`` (dot interaction) or ``DLRM_DCN``
  (low-rank cross net) is built over both; ``DLRMTrain`` (the thin wrapper that owns the loss) trains it.
- A batch is a ``torchrec.datasets.utils.Batch``: dense ``[B, n_dense]`` + a ``KeyedJaggedTensor`` with one id per
  feature per row (all lengths 1), see :func:`build_kjt`. Single process, no sharding (no DMP needed here).

Preprocessing (fitted on the fit part of the training frame only, i.e. without the holdout)
- Sparse: per feature a :class:`SparseVocab`. Index 0 is reserved for unknown / unseen / missing values. When
  the feature has more distinct values than ``max_vocab_per_feature - 1``, the most frequent ones get their own
  row and the rest of the values seen in training share ``max_vocab_per_feature // 8`` hashed rows
  (``pandas.util.hash_array``, stable across runs); values never seen in training still map to 0. During training
  each id is replaced by 0 with probability ``id_dropout`` so row 0 learns an "unknown id" embedding (otherwise
  row 0 would stay at its random initialisation and new ids at test time would get noise). The vocabulary is fitted
  on the fit part, so ids that first appear in the holdout are "unknown" there, as new ids will be at test time;
  early stopping and calibration then see a realistic share of unknown ids.
- Dense: a column whose training values are all >= 0 with max > ``log1p_min_max`` (counts) gets ``log1p``; then
  standardised with the training mean / std (std 0 -> 1), clipped to +-``clip_z``. NaN / inf -> the training
  mean (0 after standardising), plus an ``<col>__missing`` 0/1 indicator column for every column that had any
  missing value in the training frame. With no dense feature at all a constant 0 column keeps DenseArch valid.

Training
- BCE-with-logits without ``pos_weight``: re-weighting positives shifts the logits away from the true log-odds
  (it would have to be undone by calibration) and does not help AUC; the class balance is handled by the
  calibration step below instead.
- Adam over all parameters (the dense arch / over arch and the embedding tables; tables are small so dense
  embedding gradients are fine in a single process). ``epochs`` with early stopping (``patience``) on the holdout
  log loss; the best epoch's weights are kept.
- Holdout: rows in the last ``holdout_fraction`` (20%) of the training frame by ``event_timestamp`` (whole
  timestamps go to one side; the same rule as ``ranking.lgbm.time_holdout``).
- Calibration on the holdout logits: ``platt`` (scikit-learn ``LogisticRegression`` on the logit, the default),
  ``isotonic`` (``IsotonicRegression``; piecewise linear, stored as its thresholds) or ``none`` (sigmoid).
- ``refit_full=True`` (off by default, like ``LGBMConfig.refit_full``): after early stopping, preprocessing and
  model are refit on the whole training frame for the best epoch count; the holdout calibrator is kept.
- Deterministic under ``seed`` (shuffling and id dropout draw from a seeded CPU generator). CUDA when present.
- CPU threads: fit/predict run with ``num_threads`` (default 1) torch threads and restore the old setting; the
  ops are tiny, and with 2 busy cores 2 threads were ~4-30x slower than 1 in measurements.

Feature importance: permutation importance on the holdout, i.e. the drop in holdout AUC when one feature's
column (with its missing indicator) is shuffled across rows; computed once at fit time.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from recsys.data.errors import DataError
from recsys.utils import resolve_device, seed_everything
from torchrec.datasets.utils import Batch
from torchrec.models.dlrm import DLRM, DLRM_DCN, DLRMTrain
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

logger = logging.getLogger(__name__)

EPS = 1e-6
MODEL_FILE = "model.safetensors"
META_FILE = "dlrm.json"
VOCAB_FILE = "vocab.npz"
CONST_FEATURE = "__const__"  # sparse stand-in when no categorical feature is given (DLRM needs >= 1 table)


class DLRMConfig(BaseModel):
    """Hyper-parameters of the DLRM ranker."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(16, ge=1, description="dimension of every sparse table (DLRM needs one value)")
    dense_arch: list[int] = Field([64, 16], min_length=1, description="DenseArch layer sizes; last = embedding_dim")
    over_arch: list[int] = Field([64, 1], min_length=1, description="OverArch layer sizes; last = 1 (the logit)")
    interaction: Literal["dot", "dcn"] = "dot"
    dcn_num_layers: int = Field(2, ge=1, description="cross layers of DLRM_DCN (interaction='dcn')")
    dcn_low_rank_dim: int = Field(16, ge=1, description="low rank of DLRM_DCN's cross net")
    epochs: int = Field(10, ge=1, description="upper bound; early stopping usually stops earlier")
    patience: int = Field(2, ge=1, description="epochs without holdout log-loss gain before stopping")
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (dense and embedding parameters)")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 on the dense (MLP) parameters only")
    max_vocab_per_feature: int = Field(100_000, ge=2, description="rows per table incl. the unknown row 0")
    id_dropout: float = Field(0.05, ge=0, lt=1, description="train-time prob. of replacing an id by unknown (0)")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="last fraction of the training frame by time")
    refit_full: bool = Field(False, description="after early stopping, refit on the whole training frame for the "
                             "best epoch count (keeps the holdout calibrator)")
    calibration: Literal["platt", "isotonic", "none"] = "platt"
    log1p_min_max: float = Field(50.0, description="dense columns >= 0 with max above this get log1p")
    clip_z: float = Field(10.0, gt=0, description="standardised dense values are clipped to +-clip_z")
    permutation_importance: bool = Field(True, description="compute holdout permutation importance at fit")
    predict_batch_size: int = Field(8192, ge=1)
    num_threads: int = Field(1, ge=0, description="torch CPU threads while fitting/predicting (0 = leave as is); "
                             "the ops are tiny, so 1 thread is fastest, far faster on a busy machine")

    @model_validator(mode="after")
    def _check_arch(self) -> "DLRMConfig":
        if self.dense_arch[-1] != self.embedding_dim:
            raise ValueError(f"dense_arch: last layer ({self.dense_arch[-1]}) must equal embedding_dim "
                             f"({self.embedding_dim}); DLRM interacts the dense output with the embeddings")
        if self.over_arch[-1] != 1:
            raise ValueError(f"over_arch: last layer must be 1 (the logit), got {self.over_arch[-1]}")
        return self


# ------------------------------------------------------------------------------------------ preprocessing


def _hash_buckets(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """Stable hash of values into [0, n_buckets) (pandas' SipHash with its fixed default key)."""
    if values.dtype.kind in "US":
        values = values.astype(object)  # hash_array takes int or object arrays, not numpy unicode
    return (pd.util.hash_array(values, categorize=False) % np.uint64(n_buckets)).astype(np.int64)


def _as_keys(col: pd.Series, kind: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(keys, valid mask, kind): ids as int64 (kind 'int') or str (kind 'str'); missing values are not valid."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    valid = col.notna().to_numpy()
    if kind is None:
        if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
            kind = "int"
        elif pd.api.types.is_float_dtype(col.dtype):
            v = col.to_numpy(dtype=np.float64, na_value=np.nan)[valid]
            kind = "int" if np.all(np.isfinite(v)) and np.all(v == np.round(v)) else "str"
        else:
            kind = "str"
    if kind == "int":
        num = pd.to_numeric(col, errors="coerce")
        v = num.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = valid & np.isfinite(v)
        ok &= np.where(ok, v == np.round(np.where(ok, v, 0.0)), False)
        keys = np.zeros(len(col), dtype=np.int64)
        if pd.api.types.is_integer_dtype(num.dtype):
            keys[ok] = num.to_numpy()[ok].astype(np.int64)  # exact for large int64 ids
        else:
            keys[ok] = v[ok].astype(np.int64)
        return keys, ok, kind
    keys = col.astype(str).to_numpy(dtype=str)
    return keys, valid, kind


@dataclass
class SparseVocab:
    """id value -> table row. Row 0 = unknown; 1..len(exact) = frequent values; then `n_buckets` hashed rows."""

    kind: str                        # "int" | "str"
    exact: np.ndarray                # values with their own row (most frequent first)
    tail: np.ndarray                 # other values seen in training (hashed), sorted
    n_buckets: int
    _exact_index: pd.Index = field(init=False, repr=False)
    _tail_index: pd.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._exact_index = pd.Index(self.exact)
        self._tail_index = pd.Index(self.tail)

    @property
    def num_embeddings(self) -> int:
        return 1 + len(self.exact) + self.n_buckets

    @classmethod
    def fit(cls, col: pd.Series, max_rows: int) -> "SparseVocab":
        keys, valid, kind = _as_keys(col)
        counts = pd.Series(keys[valid]).value_counts(sort=False)
        # most frequent first, ties by value: independent of row order
        vc = pd.DataFrame({"v": counts.index.to_numpy(), "n": counts.to_numpy()})
        vc = vc.sort_values(["n", "v"], ascending=[False, True], kind="stable")
        values = vc["v"].to_numpy()
        if kind == "str":
            values = values.astype(str)
        if len(values) <= max_rows - 1:
            return cls(kind, values, values[:0], 0)
        n_buckets = max(1, max_rows // 8)
        n_exact = max_rows - 1 - n_buckets
        return cls(kind, values[:n_exact], np.sort(values[n_exact:]), n_buckets)

    def lookup(self, col: pd.Series) -> np.ndarray:
        """[N] int64 table rows; unseen or missing values -> 0."""
        keys, valid, _ = _as_keys(col, self.kind)
        out = np.zeros(len(keys), dtype=np.int64)
        pos = self._exact_index.get_indexer(keys)
        hit = valid & (pos >= 0)
        out[hit] = pos[hit] + 1
        if self.n_buckets:
            in_tail = valid & ~hit & (self._tail_index.get_indexer(keys) >= 0)
            out[in_tail] = 1 + len(self.exact) + _hash_buckets(keys[in_tail], self.n_buckets)
        return out


@dataclass
class DenseScaler:
    """Dense feature columns -> standardised float32 matrix (see module docstring for the rules)."""

    columns: list[str]
    log1p: list[bool]
    mean: list[float]
    std: list[float]
    indicator: list[bool]            # add a <col>__missing column
    clip_z: float = 10.0

    @property
    def output_names(self) -> list[str]:
        names = list(self.columns) + [f"{c}__missing" for c, ind in zip(self.columns, self.indicator) if ind]
        return names or ["__const__"]

    def owner(self) -> list[str]:
        """Source column of every output column (for permutation importance)."""
        own = list(self.columns) + [c for c, ind in zip(self.columns, self.indicator) if ind]
        return own or [""]

    @staticmethod
    def _raw(frame: pd.DataFrame, col: str) -> np.ndarray:
        try:
            x = pd.to_numeric(frame[col], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataError(f"dense feature is not numeric ({exc}); list it as categorical if it is an id",
                            column=col, examples=frame[[col]]) from None
        x = x.copy()
        x[~np.isfinite(x)] = np.nan
        return x

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str], log1p_min_max: float, clip_z: float) -> "DenseScaler":
        logs, means, stds, inds = [], [], [], []
        for c in columns:
            x = cls._raw(frame, c)
            ok = ~np.isnan(x)
            v = x[ok]
            lg = bool(len(v) and v.min() >= 0 and v.max() > log1p_min_max)
            if lg:
                v = np.log1p(v)
            mu = float(v.mean()) if len(v) else 0.0
            sd = float(v.std()) if len(v) else 1.0
            logs.append(lg)
            means.append(mu)
            stds.append(sd if sd > 1e-12 else 1.0)
            inds.append(bool((~ok).any()))
        return cls(list(columns), logs, means, stds, inds, clip_z)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        n = len(frame)
        if not self.columns:
            return np.zeros((n, 1), dtype=np.float32)
        cols, miss = [], []
        for c, lg, mu, sd, ind in zip(self.columns, self.log1p, self.mean, self.std, self.indicator):
            x = self._raw(frame, c)
            nan = np.isnan(x)
            if lg:
                x = np.log1p(np.clip(x, 0.0, None))  # negatives cannot occur in training; clip at 0
            z = np.clip((x - mu) / sd, -self.clip_z, self.clip_z)
            z[nan] = 0.0  # the training mean
            cols.append(z)
            if ind:
                miss.append(nan.astype(np.float64))
        return np.stack(cols + miss, axis=1).astype(np.float32)


def time_holdout(frame: pd.DataFrame, fraction: float, time_col: str = "event_timestamp") -> np.ndarray:
    """Boolean mask of the holdout: rows at or after the (1 - fraction) time quantile (whole timestamps).

    Same rule as ``ranking.lgbm.time_holdout``; without `time_col` the last rows in frame order are used.
    """
    n = len(frame)
    if n < 2:
        raise DataError(f"need at least 2 training rows for a time holdout, got {n}")
    cut_pos = min(n - 1, max(1, int(np.floor(n * (1 - fraction)))))
    if time_col not in frame.columns:
        mask = np.zeros(n, dtype=bool)
        mask[cut_pos:] = True
        return mask
    ts = frame[time_col].to_numpy()
    order = np.argsort(ts, kind="stable")
    mask = ts >= ts[order[cut_pos]]
    if mask.all() or not mask.any():
        mask = np.zeros(n, dtype=bool)
        mask[order[cut_pos:]] = True
    return mask


# ------------------------------------------------------------------------------------------------ model


def build_tables(vocabs: dict[str, SparseVocab] | dict[str, int], embedding_dim: int) -> list[EmbeddingBagConfig]:
    """One EmbeddingBagConfig per sparse feature: table `t_<feature>` with the feature's vocabulary size."""
    tables = []
    for name, v in vocabs.items():
        rows = v if isinstance(v, int) else v.num_embeddings
        tables.append(EmbeddingBagConfig(name=f"t_{name}", embedding_dim=embedding_dim,
                                         num_embeddings=int(rows), feature_names=[name]))
    return tables


def build_dlrm(cfg: DLRMConfig, tables: list[EmbeddingBagConfig], dense_in_features: int,
               device: torch.device) -> DLRM:
    """DLRM (dot interaction) or DLRM_DCN over an EmbeddingBagCollection of `tables`. Logits: B X 1."""
    ebc = EmbeddingBagCollection(tables=tables, device=device)
    if cfg.interaction == "dcn":
        model = DLRM_DCN(embedding_bag_collection=ebc, dense_in_features=dense_in_features,
                         dense_arch_layer_sizes=list(cfg.dense_arch), over_arch_layer_sizes=list(cfg.over_arch),
                         dcn_num_layers=cfg.dcn_num_layers, dcn_low_rank_dim=cfg.dcn_low_rank_dim,
                         dense_device=device)
    else:
        model = DLRM(embedding_bag_collection=ebc, dense_in_features=dense_in_features,
                     dense_arch_layer_sizes=list(cfg.dense_arch), over_arch_layer_sizes=list(cfg.over_arch),
                     dense_device=device)
    return model.to(device)


def build_kjt(ids: torch.Tensor, keys: Sequence[str]) -> KeyedJaggedTensor:
    """[B, F] int64 ids (one id per feature per row) -> KeyedJaggedTensor with all lengths 1.

    Values are laid out key-major, as TorchRec expects::

        #            0      1      2   <-- batch (B = 3)
        # user_id   [u0]   [u1]   [u2]
        # item_id   [i0]   [i1]   [i2]
        # ^ feature
        KeyedJaggedTensor(keys=["user_id", "item_id"],
                          values=tensor([u0, u1, u2, i0, i1, i2]),
                          lengths=tensor([1, 1, 1, 1, 1, 1]))
    """
    b, f = ids.shape
    if f != len(keys):
        raise ValueError(f"ids have {f} columns but {len(keys)} keys were given")
    return KeyedJaggedTensor(keys=list(keys), values=ids.t().reshape(-1).contiguous(),
                             lengths=torch.ones(b * f, dtype=torch.int32, device=ids.device))


def make_batch(dense: torch.Tensor, ids: torch.Tensor, keys: Sequence[str],
               labels: torch.Tensor | None = None) -> Batch:
    """torchrec Batch (what DLRMTrain consumes): dense [B, n_dense], sparse KJT, labels [B]."""
    if labels is None:
        labels = torch.zeros(dense.shape[0], dtype=torch.float32, device=dense.device)
    return Batch(dense_features=dense, sparse_features=build_kjt(ids, keys), labels=labels)


@contextlib.contextmanager
def _torch_threads(n: int):
    """Temporarily set torch's intra-op CPU threads (restored afterwards); n = 0 leaves them alone."""
    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != old:
            torch.set_num_threads(old)


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def _bce(y: np.ndarray, logits: np.ndarray) -> float:
    z = logits.astype(np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


# ----------------------------------------------------------------------------------------------- ranker


class DLRMRanker:
    """Fit/predict wrapper around a TorchRec DLRM.

    >>> ranker = DLRMRanker(DLRMConfig(epochs=5), seed=0).fit(train, ["item_pos_rate", "user_id", "item_id"],
    ...                                                       categorical=["user_id", "item_id"])
    >>> p = ranker.predict(test)            # [N] calibrated probabilities in (0, 1)
    >>> ranker.feature_importance()         # {feature: holdout AUC drop when permuted}
    """

    def __init__(self, cfg: DLRMConfig | None = None, seed: int = 0, device: str = "auto"):
        self.cfg = cfg or DLRMConfig()
        self.seed = int(seed)
        self.device_name = device
        self.device = resolve_device(device)
        self.model: DLRM | None = None
        self.features: list[str] = []
        self.categorical: list[str] = []
        self.sparse_keys: list[str] = []
        self.vocabs: dict[str, SparseVocab] = {}
        self.scaler: DenseScaler | None = None
        self.calibrator: dict[str, Any] = {"kind": "none"}
        self.importance_: dict[str, float] | None = None
        self.fit_info: dict[str, Any] = {}
        self.history_: list[dict[str, float]] = []
        self.refit_history_: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------------ inputs
    def _check_columns(self, frame: pd.DataFrame, cols: Sequence[str]) -> None:
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"frame lacks feature columns {missing}; it has {list(frame.columns)}",
                            column=missing[0])

    def _sparse_ids(self, frame: pd.DataFrame) -> np.ndarray:
        if self.categorical:
            return np.stack([self.vocabs[c].lookup(frame[c]) for c in self.categorical], axis=1)
        return np.zeros((len(frame), 1), dtype=np.int64)

    def _tensors(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense [N, n_dense] float32, ids [N, F] int64), both on CPU."""
        assert self.scaler is not None
        dense = torch.from_numpy(self.scaler.transform(frame))
        ids = torch.from_numpy(self._sparse_ids(frame))
        return dense, ids

    # ------------------------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, features: list[str], categorical: list[str], label: str = "label",
            time_col: str = "event_timestamp") -> "DLRMRanker":
        """Train on `frame`; early stopping and calibration on its latest `holdout_fraction` by `time_col`."""
        with _torch_threads(self.cfg.num_threads if self.device.type == "cpu" else 0):
            return self._fit(frame, features, categorical, label, time_col)

    def _fit(self, frame: pd.DataFrame, features: list[str], categorical: list[str], label: str,
             time_col: str) -> "DLRMRanker":
        t0 = time.perf_counter()
        cfg = self.cfg
        features, categorical = list(features), list(categorical)
        if not features:
            raise DataError("DLRMRanker.fit: empty feature list")
        if len(set(features)) != len(features):
            raise DataError(f"duplicate features: {features}")
        bad = [c for c in categorical if c not in features]
        if bad:
            raise DataError(f"categorical features {bad} are not in the feature list {features}", column=bad[0])
        self._check_columns(frame, features + [label])
        y_all = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isin(y_all, (0.0, 1.0)).all():
            raise DataError("label must be 0/1", column=label, examples=frame[~np.isin(y_all, (0.0, 1.0))])

        seed_everything(self.seed)
        hold = time_holdout(frame, cfg.holdout_fraction, time_col)
        self.features, self.categorical = features, categorical
        self.sparse_keys = categorical if categorical else [CONST_FEATURE]
        self._fit_preprocessing(frame[~hold])

        dense, ids = self._tensors(frame)
        hold_t = torch.from_numpy(hold)
        y = torch.from_numpy(y_all.astype(np.float32))
        dev = self.device
        Hd, Hi, Hy = dense[hold_t].to(dev), ids[hold_t].to(dev), y_all[hold]
        best_epoch = self._train(dense[~hold_t], ids[~hold_t], y[~hold_t], cfg.epochs, (Hd, Hi, Hy))

        h_logits = self._logits(Hd, Hi)
        self.calibrator = self._fit_calibrator(h_logits, Hy)
        h_prob = self._calibrate(h_logits)
        self.importance_ = self._permutation_importance(Hd, Hi, Hy, h_logits) if cfg.permutation_importance else None
        self.fit_info = {
            "n_train": int(len(frame)), "n_fit": int((~hold).sum()), "n_holdout": int(hold.sum()),
            "best_epoch": int(best_epoch), "epochs_run": len(self.history_),
            "holdout_auc": _roc_auc(Hy, h_logits), "holdout_logloss_raw": _bce(Hy, h_logits),
            "holdout_logloss_calibrated": float(np.mean(-(Hy * np.log(h_prob) + (1 - Hy) * np.log(1 - h_prob))))
            if len(Hy) else float("nan"),
            "positive_rate": float(y_all.mean()), "refit_full": bool(cfg.refit_full),
        }
        if cfg.refit_full:
            # same recipe on the whole frame for the early-stopped number of epochs; the holdout calibrator and
            # importances are kept (the refit model has no unseen data left to fit them on)
            seed_everything(self.seed)
            self._fit_preprocessing(frame)
            dense, ids = self._tensors(frame)
            self._train(dense, ids, y, max(best_epoch, 1), None)
        assert self.scaler is not None
        self.fit_info.update({"dense_columns": self.scaler.output_names, "table_sizes": self._table_sizes(),
                              "device": str(dev), "fit_seconds": time.perf_counter() - t0})
        logger.info("DLRM fit: %s", {k: v for k, v in self.fit_info.items() if k != "dense_columns"})
        return self

    def _fit_preprocessing(self, part: pd.DataFrame) -> None:
        cfg = self.cfg
        dense_cols = [f for f in self.features if f not in self.categorical]
        self.vocabs = {c: SparseVocab.fit(part[c], cfg.max_vocab_per_feature) for c in self.categorical}
        self.scaler = DenseScaler.fit(part, dense_cols, cfg.log1p_min_max, cfg.clip_z)

    def _train(self, dense: torch.Tensor, ids: torch.Tensor, y: torch.Tensor, epochs: int,
               holdout: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None) -> int:
        """Build a fresh model and train it with DLRMTrain; early stopping on `holdout` (dense, ids, labels).

        Returns the best epoch (the model is left with its weights); without a holdout all `epochs` run.
        """
        cfg, dev = self.cfg, self.device
        torch.manual_seed(self.seed)  # same initial weights for the holdout fit and a full refit
        Xd, Xi, Y = dense.to(dev), ids.to(dev), y.to(dev)
        self.model = build_dlrm(cfg, build_tables(self._table_sizes(), cfg.embedding_dim), Xd.shape[1], dev)
        train_module = DLRMTrain(self.model).to(dev)
        emb_params = list(self.model.sparse_arch.parameters())
        emb_ids = {id(p) for p in emb_params}
        mlp_params = [p for p in self.model.parameters() if id(p) not in emb_ids]
        opt = torch.optim.Adam([{"params": mlp_params, "weight_decay": cfg.weight_decay},
                                {"params": emb_params, "weight_decay": 0.0}], lr=cfg.lr)

        gen = torch.Generator().manual_seed(self.seed)
        n = int(Xd.shape[0])
        best_loss, best_state, best_epoch, bad_epochs = float("inf"), None, epochs, 0
        history = []
        for epoch in tqdm(range(1, epochs + 1), desc="dlrm epochs", disable=None, leave=False):
            train_module.train()
            perm = torch.randperm(n, generator=gen)
            drop = (torch.rand((n, Xi.shape[1]), generator=gen) < cfg.id_dropout) if cfg.id_dropout else None
            total = 0.0
            for start in range(0, n, cfg.batch_size):
                idx_cpu = perm[start:start + cfg.batch_size]
                idx = idx_cpu.to(dev)
                bids = Xi[idx]
                if drop is not None:
                    bids = bids.masked_fill(drop[idx_cpu].to(dev), 0)
                loss, _ = train_module(make_batch(Xd[idx], bids, self.sparse_keys, Y[idx]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx_cpu)
            row: dict[str, float] = {"epoch": epoch, "train_loss": total / max(n, 1)}
            if holdout is not None:
                h_logits = self._logits(holdout[0], holdout[1])
                h_loss = _bce(holdout[2], h_logits)
                row.update(holdout_loss=h_loss, holdout_auc=_roc_auc(holdout[2], h_logits))
                if h_loss < best_loss - 1e-5:
                    best_loss, best_epoch, bad_epochs = h_loss, epoch, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    bad_epochs += 1
            history.append(row)
            if holdout is not None and bad_epochs >= cfg.patience:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        if holdout is not None:
            self.history_ = history
        else:
            self.refit_history_ = history
        return best_epoch

    def _table_sizes(self) -> dict[str, int]:
        if not self.categorical:
            return {CONST_FEATURE: 1}
        return {c: self.vocabs[c].num_embeddings for c in self.categorical}

    # ------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def _logits(self, dense: torch.Tensor, ids: torch.Tensor) -> np.ndarray:
        assert self.model is not None
        was_training = self.model.training
        self.model.eval()
        out = []
        bs = self.cfg.predict_batch_size
        for start in range(0, dense.shape[0], bs):
            d = dense[start:start + bs].to(self.device)
            i = ids[start:start + bs].to(self.device)
            out.append(self.model(d, build_kjt(i, self.sparse_keys)).squeeze(-1).float().cpu())
        self.model.train(was_training)
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def predict_logits(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] raw (uncalibrated) logits."""
        if self.model is None or self.scaler is None:
            raise RuntimeError("DLRMRanker is not fitted")
        self._check_columns(frame, self.features)
        if len(frame) == 0:
            return np.zeros(0, dtype=np.float64)
        with _torch_threads(self.cfg.num_threads if self.device.type == "cpu" else 0):
            return self._logits(*self._tensors(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] float64 calibrated probabilities of a positive, in (0, 1), one per row of `frame`."""
        return self._calibrate(self.predict_logits(frame))

    # ----------------------------------------------------------------------------- calibration
    def _fit_calibrator(self, logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        kind = self.cfg.calibration
        if kind == "none" or len(y) < 2 or y.min() == y.max():
            if kind != "none":
                logger.warning("DLRM: holdout has a single class; calibration skipped")
            return {"kind": "none"}
        if kind == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e4, max_iter=1000).fit(logits.reshape(-1, 1), y.astype(int))
            return {"kind": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(logits, y)
        return {"kind": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}

    def _calibrate(self, logits: np.ndarray) -> np.ndarray:
        c = self.calibrator
        if c["kind"] == "platt":
            p = _sigmoid(c["a"] * logits + c["b"])
        elif c["kind"] == "isotonic":
            p = np.interp(logits, np.asarray(c["x"]), np.asarray(c["y"]))  # = IsotonicRegression.predict (clip)
        else:
            p = _sigmoid(logits)
        return np.clip(p, EPS, 1 - EPS).astype(np.float64)

    # ------------------------------------------------------------------------------ importance
    def _permutation_importance(self, Hd: torch.Tensor, Hi: torch.Tensor, Hy: np.ndarray,
                                base_logits: np.ndarray) -> dict[str, float] | None:
        base = _roc_auc(Hy, base_logits)
        if np.isnan(base):
            return None
        assert self.scaler is not None
        rng = np.random.default_rng(self.seed)
        perm = torch.from_numpy(rng.permutation(Hd.shape[0])).to(Hd.device)
        owner = self.scaler.owner()
        out: dict[str, float] = {}
        for f in self.features:
            d, i = Hd, Hi
            if f in self.categorical:
                j = self.categorical.index(f)
                i = Hi.clone()
                i[:, j] = Hi[perm, j]
            else:
                cols = torch.tensor([k for k, o in enumerate(owner) if o == f], device=Hd.device)
                d = Hd.clone()
                d[:, cols] = Hd[perm][:, cols]
            out[f] = base - _roc_auc(Hy, self._logits(d, i))
        return out

    def feature_importance(self) -> dict[str, float] | None:
        """{feature: holdout AUC drop when the feature is permuted} (None if not computed / undefined)."""
        return None if self.importance_ is None else dict(self.importance_)

    # ------------------------------------------------------------------------------ persistence
    def save(self, dir: str | Path) -> Path:
        """Write model.safetensors + dlrm.json + vocab.npz to `dir` atomically (temp dir, then os.replace)."""
        from safetensors.torch import save_file

        from recsys.data.dataset import atomic_directory

        if self.model is None or self.scaler is None:
            raise RuntimeError("DLRMRanker is not fitted")
        target = Path(dir)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        arrays: dict[str, np.ndarray] = {}
        vocab_meta = {}
        for j, (c, v) in enumerate(self.vocabs.items()):
            arrays[f"exact_{j}"], arrays[f"tail_{j}"] = v.exact, v.tail
            vocab_meta[c] = {"kind": v.kind, "n_buckets": v.n_buckets, "slot": j}
        meta = {
            "format": "recsys.ranking.dlrm/1", "config": self.cfg.model_dump(), "seed": self.seed,
            "features": self.features, "categorical": self.categorical, "sparse_keys": self.sparse_keys,
            "vocabs": vocab_meta, "scaler": {k: getattr(self.scaler, k) for k in
                                             ("columns", "log1p", "mean", "std", "indicator", "clip_z")},
            "calibrator": self.calibrator, "importance": self.importance_, "fit_info": self.fit_info,
            "history": self.history_,
        }
        with atomic_directory(target) as tmp:
            save_file(state, str(tmp / MODEL_FILE))
            np.savez(tmp / VOCAB_FILE, **arrays)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=_jsonable))
        return target

    @classmethod
    def load(cls, dir: str | Path, device: str = "auto") -> "DLRMRanker":
        from safetensors.torch import load_file

        path = Path(dir)
        meta = json.loads((path / META_FILE).read_text())
        r = cls(DLRMConfig(**meta["config"]), seed=meta["seed"], device=device)
        r.features, r.categorical, r.sparse_keys = meta["features"], meta["categorical"], meta["sparse_keys"]
        with np.load(path / VOCAB_FILE, allow_pickle=False) as z:
            r.vocabs = {c: SparseVocab(m["kind"], z[f"exact_{m['slot']}"], z[f"tail_{m['slot']}"], m["n_buckets"])
                        for c, m in meta["vocabs"].items()}
        r.scaler = DenseScaler(**meta["scaler"])
        r.calibrator, r.importance_ = meta["calibrator"], meta["importance"]
        r.fit_info, r.history_ = meta.get("fit_info", {}), meta.get("history", [])
        tables = build_tables(r._table_sizes(), r.cfg.embedding_dim)
        r.model = build_dlrm(r.cfg, tables, len(r.scaler.output_names), r.device)
        r.model.load_state_dict({k: v.to(r.device) for k, v in load_file(str(path / MODEL_FILE)).items()})
        r.model.eval()
        return r


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
