"""TorchRec DLRM ranker: a pointwise "is this impression positive" model over a feature frame (a `Ranker`).

Fitting, in order (each step has its own module):
1. time holdout: the latest ``holdout_fraction`` of the training frame by time (``ranking.holdout``);
2. preprocessing fitted on the rest, the fit part (``ranking.dlrm_preprocessing``: scikit-learn encoders);
3. training with early stopping on the holdout log loss (``ranking.dlrm_training``) of a TorchRec DLRM over
   one table per categorical feature (``ranking.dlrm_model``: KJT in, KeyedTensor out);
4. calibration of the holdout logits (``ranking.calibration``);
5. permutation importance on the holdout (``ranking.importance``);
6. with ``refit_full`` (off by default, like ``LGBMConfig.refit_full``): preprocessing and model are refit on
   the whole training frame for the best epoch count; calibrator and importance stay those of the holdout.

Deterministic under ``seed``: model initialisation runs inside ``recsys.runtime.seeded(seed)``, shuffling and id
dropout draw from a seeded generator, and fitting runs inside ``recsys.runtime.deterministic_kernels`` (CUDA
reductions keep one order); the caller's random state is untouched. CUDA when present. Fit and predict run
with ``num_threads`` torch threads (default 1: the ops are tiny, and on a busy machine more threads are slower)
and restore the caller's setting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from scipy.special import expit
from torchrec.models.dlrm import DLRM

from ranking.calibration import LogitCalibrator
from ranking.dlrm_model import build_dlrm, build_tables, model_logits
from ranking.dlrm_preprocessing import DLRMPreprocessor
from ranking.dlrm_training import DLRMInputs, TrainedDLRM, train_dlrm
from ranking.holdout import time_holdout
from ranking.importance import IMPORTANCE_NAME, permutation_auc_drop
from ranking.metrics import auc, logloss
from recsys.errors import DataError
from recsys.io import atomic_directory
from recsys.runtime import cpu_threads, deterministic_kernels, resolve_device, seeded

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
META_FILE = "dlrm.json"
PREPROCESSOR_FILE = "preprocessor.skops"
CALIBRATOR_FILE = "calibrator.skops"


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
    max_vocab_per_feature: int = Field(100_000, ge=3, description="rows per table incl. the unknown row 0; "
                                       "rarer values share one 'infrequent' row")
    id_dropout: float = Field(0.05, ge=0, lt=1, description="train-time prob. of replacing an id by unknown (0)")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="last fraction of the training frame by time")
    refit_full: bool = Field(False, description="after early stopping, refit on the whole training frame for the "
                             "best epoch count (keeps the holdout calibrator)")
    calibration: Literal["platt", "isotonic", "none"] = "platt"
    log1p_min_max: float = Field(50.0, description="dense columns >= 0 with max above this get log1p")
    clip_z: float = Field(10.0, gt=0, description="standardised dense values are clipped to +-clip_z")
    permutation_importance: bool = Field(True, description="compute holdout permutation importance at fit")
    permutation_repeats: int = Field(5, ge=1, description="shuffles per feature for permutation importance")
    predict_batch_size: int = Field(8192, ge=1)
    num_threads: int | None = Field(1, ge=1, description="torch CPU threads while fitting/predicting "
                                    "(None = every usable core)")
    seed: int = 0

    @model_validator(mode="after")
    def _check_arch(self) -> DLRMConfig:
        if self.dense_arch[-1] != self.embedding_dim:
            raise ValueError(f"dense_arch: last layer ({self.dense_arch[-1]}) must equal embedding_dim "
                             f"({self.embedding_dim}); DLRM interacts the dense output with the embeddings")
        if self.over_arch[-1] != 1:
            raise ValueError(f"over_arch: last layer must be 1 (the logit), got {self.over_arch[-1]}")
        return self


class DLRMRanker:
    """Fit/predict wrapper around a TorchRec DLRM.

    >>> ranker = DLRMRanker(DLRMConfig(epochs=5)).fit(train, ["item_pos_rate", "user_id", "item_id"],
    ...                                              categorical=["user_id", "item_id"])
    >>> p = ranker.predict(test)            # [N] calibrated probabilities in (0, 1)
    >>> ranker.feature_importance()         # holdout AUC drop when a feature is permuted, by feature
    """

    kind: ClassVar[str] = "dlrm"

    def __init__(self, config: DLRMConfig | None = None, device: str = "auto"):
        self.config = config or DLRMConfig()
        self.device = resolve_device(device)
        self.model: DLRM | None = None
        self.preprocessor: DLRMPreprocessor | None = None
        self.calibrator = LogitCalibrator(self.config.calibration)
        self.features: list[str] = []
        self.categorical: list[str] = []
        self.importance = pd.Series(dtype=np.float64, name=IMPORTANCE_NAME)
        self.fit_info: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] = (),
            label: str = "label", time_col: str = "event_timestamp") -> DLRMRanker:
        """Train on `frame`; early stopping and calibration on its latest `holdout_fraction` by `time_col`."""
        features, categorical = list(features), list(categorical)
        y = self._check_inputs(frame, features, categorical, label, time_col)
        cfg = self.config
        self.features, self.categorical = features, categorical
        with cpu_threads(cfg.num_threads), deterministic_kernels():
            hold = time_holdout(frame, cfg.holdout_fraction, time_col)
            trained = self._train(frame, y, hold, cfg.epochs)
            self.history = trained.history
            held = self._inputs(frame.loc[hold], y[hold])
            logits = model_logits(trained.model, held.dense, held.ids, self._keys(), cfg.predict_batch_size,
                                  self.device)
            self.calibrator = LogitCalibrator(cfg.calibration).fit(logits, held.labels)
            if cfg.permutation_importance:
                self.importance = permutation_auc_drop(self, frame.loc[hold], y[hold], DLRMRanker.predict_logits,
                                                       cfg.permutation_repeats, cfg.seed)
            self.fit_info = {
                "n_train": int(len(frame)), "n_fit": int((~hold).sum()), "n_holdout": int(hold.sum()),
                "best_epoch": int(trained.best_epoch), "epochs_run": len(trained.history),
                "holdout_auc": auc(held.labels, logits), "holdout_logloss_raw": logloss(held.labels, expit(logits)),
                "holdout_logloss_calibrated": logloss(held.labels, self.calibrator.predict(logits)),
                "calibration": self.calibrator.fitted_method, "positive_rate": float(y.mean()),
                "refit_full": bool(cfg.refit_full),
            }
            if cfg.refit_full:
                refit = self._train(frame, y, np.zeros(len(frame), dtype=bool), max(trained.best_epoch, 1))
                self.fit_info["refit_epochs"] = len(refit.history)
        assert self.preprocessor is not None
        self.fit_info.update({"dense_columns": self.preprocessor.dense_names,
                              "table_sizes": self.preprocessor.table_sizes, "device": str(self.device)})
        logger.info("DLRM fit: %s", {k: v for k, v in self.fit_info.items() if k != "dense_columns"})
        return self

    @staticmethod
    def _check_inputs(frame: pd.DataFrame, features: list[str], categorical: list[str], label: str,
                      time_col: str) -> np.ndarray:
        if not features:
            raise DataError("DLRMRanker.fit: empty feature list")
        if len(set(features)) != len(features):
            raise DataError(f"duplicate features: {features}")
        bad = [c for c in categorical if c not in features]
        if bad:
            raise DataError(f"categorical features {bad} are not in the feature list {features}", column=bad[0])
        missing = [c for c in (*features, label, time_col) if c not in frame.columns]
        if missing:
            raise DataError(f"frame lacks columns {missing}; it has {list(frame.columns)}", column=missing[0])
        y = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError("label must be 0/1", column=label, examples=frame[~np.isin(y, (0.0, 1.0))])
        return y

    def _train(self, frame: pd.DataFrame, y: np.ndarray, hold: np.ndarray, epochs: int) -> TrainedDLRM:
        """Fit preprocessing on the rows outside `hold`, build a fresh model (same seed: same initial weights
        for the holdout fit and a full refit) and train it, early stopping on `hold` when it has rows."""
        cfg = self.config
        dense = [f for f in self.features if f not in self.categorical]
        self.preprocessor = DLRMPreprocessor(self.categorical, dense, cfg.max_vocab_per_feature, cfg.log1p_min_max,
                                             cfg.clip_z).fit(frame.loc[~hold])
        data = self._inputs(frame, y)
        with seeded(cfg.seed):
            self.model = self._new_model(self.preprocessor)
        return train_dlrm(self.model, self._keys(), data.rows(~hold), data.rows(hold) if hold.any() else None,
                          epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          id_dropout=cfg.id_dropout, patience=cfg.patience, seed=cfg.seed,
                          predict_batch_size=cfg.predict_batch_size, device=self.device)

    def _new_model(self, pre: DLRMPreprocessor) -> DLRM:
        cfg = self.config
        return build_dlrm(build_tables(pre.table_sizes, cfg.embedding_dim), len(pre.dense_names), cfg.dense_arch,
                          cfg.over_arch, self.device, cfg.interaction, cfg.dcn_num_layers, cfg.dcn_low_rank_dim)

    def _fitted(self) -> tuple[DLRM, DLRMPreprocessor]:
        if self.model is None or self.preprocessor is None:
            raise RuntimeError("DLRMRanker is not fitted")
        return self.model, self.preprocessor

    def _keys(self) -> list[str]:
        return self._fitted()[1].sparse_keys

    def _inputs(self, frame: pd.DataFrame, labels: np.ndarray) -> DLRMInputs:
        assert self.preprocessor is not None
        dense, ids = self.preprocessor.transform(frame)
        return DLRMInputs(torch.from_numpy(dense), torch.from_numpy(ids), labels)

    # --------------------------------------------------------------------------------------- predict
    def predict_logits(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] raw (uncalibrated) logits."""
        model, _ = self._fitted()
        if len(frame) == 0:
            return np.zeros(0, dtype=np.float64)
        with cpu_threads(self.config.num_threads):
            data = self._inputs(frame, np.zeros(len(frame)))
            return model_logits(model, data.dense, data.ids, self._keys(), self.config.predict_batch_size,
                                self.device)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] float64 calibrated probabilities of a positive, in (0, 1), one per row of `frame`."""
        return self.calibrator.predict(self.predict_logits(frame))

    def feature_importance(self) -> pd.Series:
        """Holdout AUC drop when the feature is permuted, largest first (empty when not computed)."""
        return self.importance.copy()

    # ----------------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors, preprocessor.skops, calibrator.skops and dlrm.json atomically."""
        model, pre = self._fitted()
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = {"config": self.config.model_dump(), "features": self.features, "categorical": self.categorical,
                "importance": {k: float(v) for k, v in self.importance.items()}, "fit_info": self.fit_info,
                "history": self.history}
        target = Path(directory)
        with atomic_directory(target) as tmp:
            save_file(state, str(tmp / MODEL_FILE))
            pre.save(tmp / PREPROCESSOR_FILE)
            self.calibrator.save(tmp / CALIBRATOR_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        return target

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> DLRMRanker:
        path = Path(directory)
        meta = json.loads((path / META_FILE).read_text())
        ranker = cls(DLRMConfig(**meta["config"]), device=device)
        ranker.features, ranker.categorical = meta["features"], meta["categorical"]
        ranker.importance = pd.Series(meta["importance"], dtype=np.float64, name=IMPORTANCE_NAME)
        ranker.fit_info, ranker.history = meta["fit_info"], meta["history"]
        ranker.preprocessor = DLRMPreprocessor.load(path / PREPROCESSOR_FILE)
        ranker.calibrator = LogitCalibrator.load(path / CALIBRATOR_FILE)
        with seeded(ranker.config.seed):  # the initial weights are overwritten; the caller's RNG stays as it was
            ranker.model = ranker._new_model(ranker.preprocessor)
        ranker.model.load_state_dict({k: v.to(ranker.device) for k, v in load_file(str(path / MODEL_FILE)).items()})
        ranker.model.eval()
        return ranker
