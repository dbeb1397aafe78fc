"""LightGBM ranker: a binary classifier of "is this impression positive" over a feature frame (a `Ranker`).

- Objective ``binary`` (pointwise CTR-style ranker); scores are probabilities, so log loss and calibration mean
  something.
- Early stopping on the time-ordered holdout of the TRAINING frame (``ranking.holdout.time_holdout``); the test
  frame is never seen while fitting. With ``refit_full=True`` the model is refit on the whole training frame for
  the early-stopped number of rounds.
- Categorical features: id-like columns (``user_id``/``item_id`` in the "ids" baseline, ``sid_0..`` semantic
  IDs) are cast to pandas ``category`` with the categories seen in the training frame. LightGBM stores these
  categories inside the model (``pandas_categorical``), so a reloaded booster maps them the same way; unseen
  values become missing. Use :func:`prepare_frame` before calling a bare booster's ``predict``.
- Deterministic: ``deterministic=True``, ``force_row_wise=True``, ``seed`` and one thread by default
  (``num_threads``): the same data and seed give the same trees bit for bit, whatever the machine's core count
  (a parallel histogram's float sums depend on the thread count).
- Native ``lgb.train`` API (LightGBM 4.7 deprecates ``eval_set=`` of the sklearn ``fit``).
- Saved as LightGBM's own text model plus a JSON of the wrapper's metadata (nothing that runs code on load).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ranking.holdout import time_holdout
from recsys.errors import DataError
from recsys.io import atomic_directory
from recsys.runtime import resolve_threads

MODEL_FILE = "model.txt"
META_FILE = "lgbm.json"


class LGBMConfig(BaseModel):
    """Hyper-parameters of the LightGBM ranker (defaults are a sane small-data starting point)."""

    model_config = ConfigDict(extra="forbid")

    num_boost_round: int = Field(1000, ge=1, description="upper bound on trees; early stopping picks fewer")
    early_stopping_rounds: int = Field(50, ge=1, description="stop after this many rounds without holdout gain")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="last fraction of the training frame by time")
    refit_full: bool = Field(False, description="refit on the whole training frame with the best round count")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    max_cat_to_onehot: int = Field(4, ge=1)
    cat_smooth: float = Field(10.0, ge=0)
    cat_l2: float = Field(10.0, ge=0)
    min_data_per_group: int = Field(50, ge=1, description="min rows per categorical value group")
    max_bin: int = Field(255, ge=2)
    num_threads: int | None = Field(1, ge=1, description="LightGBM threads (None = every usable core: results then "
                                    "depend on the machine's core count)")
    seed: int = 0

    def lgb_params(self) -> dict[str, Any]:
        """Parameters passed to ``lgb.train`` (everything except the training-loop settings)."""
        skip = {"num_boost_round", "early_stopping_rounds", "holdout_fraction", "refit_full"}
        params = {k: v for k, v in self.model_dump().items() if k not in skip}
        params.update(objective="binary", metric=["binary_logloss", "auc"], deterministic=True,
                      force_row_wise=True, verbosity=-1, first_metric_only=True,
                      num_threads=resolve_threads(self.num_threads))
        return params


def prepare_frame(frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] = (),
                  categories: dict[str, list] | None = None) -> pd.DataFrame:
    """The model input: `features` columns in order, categorical ones as pandas category.

    `categories` fixes each categorical column's categories (the training ones); values outside become NaN.
    Numeric columns are cast to float (booleans included); missing numeric values stay NaN.
    """
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise KeyError(f"feature frame lacks columns {missing}; it has {list(frame.columns)}")
    bad_cat = [c for c in categorical if c not in features]
    if bad_cat:
        raise ValueError(f"categorical features {bad_cat} are not in the feature list {list(features)}")
    out = {}
    for f in features:
        col = frame[f]
        if f in categorical:
            if categories is not None:
                values = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
                out[f] = pd.Categorical(values, categories=categories[f])
            else:
                out[f] = col.astype("category")
        else:
            out[f] = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=frame.index)


class LGBMRanker:
    """Fit/predict wrapper around a LightGBM binary booster.

    >>> ranker = LGBMRanker(LGBMConfig(seed=1)).fit(train_frame, ["item_pos_rate", "cos_mean"], categorical=[])
    >>> p = ranker.predict(test_frame)            # [N] probabilities
    >>> ranker.feature_importance()               # Series "gain" by feature, largest first
    """

    kind: ClassVar[str] = "lgbm"

    def __init__(self, config: LGBMConfig | None = None):
        self.config = config or LGBMConfig()
        self.booster: lgb.Booster | None = None
        self.features: list[str] = []
        self.categorical: list[str] = []
        self.categories: dict[str, list] = {}
        self.fit_info: dict[str, Any] = {}

    def fit(self, frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] = (),
            label: str = "label", time_col: str = "event_timestamp") -> LGBMRanker:
        """Train on `frame` (early stopping on its latest `holdout_fraction` by `time_col`)."""
        features, categorical = list(features), list(categorical)
        if not features:
            raise ValueError("LGBMRanker.fit: empty feature list")
        if len(set(features)) != len(features):
            raise ValueError(f"duplicate features: {features}")
        for col in (label, time_col):
            if col not in frame.columns:
                raise KeyError(f"training frame lacks column '{col}'")
        y = frame[label].to_numpy(dtype=np.float64)
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError("label must be 0/1", column=label)
        cfg = self.config
        self.features, self.categorical = features, categorical
        self.categories = {c: sorted(pd.unique(frame[c].dropna()).tolist()) for c in categorical}
        X = prepare_frame(frame, features, categorical, self.categories)

        hold = time_holdout(frame, cfg.holdout_fraction, time_col)
        params = cfg.lgb_params()
        cat = categorical or "auto"
        dtrain = lgb.Dataset(X[~hold], y[~hold], categorical_feature=cat, free_raw_data=False)
        dvalid = lgb.Dataset(X[hold], y[hold], categorical_feature=cat, reference=dtrain, free_raw_data=False)
        evals: dict = {}
        booster = lgb.train(
            params, dtrain, num_boost_round=cfg.num_boost_round, valid_sets=[dvalid], valid_names=["holdout"],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False),
                       lgb.record_evaluation(evals)],
        )
        best = int(booster.best_iteration or booster.current_iteration())
        ts = frame[time_col]
        self.fit_info = {
            "n_train": int(len(frame)), "n_fit": int((~hold).sum()), "n_holdout": int(hold.sum()),
            "holdout_start": str(ts[hold].min()), "holdout_end": str(ts[hold].max()),
            "fit_end": str(ts[~hold].max()), "best_iteration": best,
            "holdout_logloss": float(evals["holdout"]["binary_logloss"][best - 1]),
            "holdout_auc": float(evals["holdout"]["auc"][best - 1]),
            "positive_rate": float(y.mean()),
        }
        if cfg.refit_full:
            dfull = lgb.Dataset(X, y, categorical_feature=cat, free_raw_data=False)
            booster = lgb.train(params, dfull, num_boost_round=best)
        else:
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        self.booster = booster
        return self

    def _fitted(self) -> lgb.Booster:
        if self.booster is None:
            raise RuntimeError("LGBMRanker is not fitted")
        return self.booster

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The exact model input for `frame` (what a bare booster's predict expects)."""
        return prepare_frame(frame, self.features, self.categorical, self.categories or None)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] float64 probabilities of a positive, one per row of `frame`."""
        booster = self._fitted()
        if len(frame) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(booster.predict(self.prepare(frame)), dtype=np.float64)

    def feature_importance(self) -> pd.Series:
        """Total split gain per feature, largest first (ties by name)."""
        b = self._fitted()
        gain = pd.Series(b.feature_importance("gain").astype(np.float64), index=b.feature_name(), name="gain")
        order = sorted(gain.index, key=lambda f: (-gain[f], f))
        return gain.loc[order]

    def save(self, directory: str | Path) -> Path:
        """Write model.txt (LightGBM's text model) and lgbm.json (features, categories, config) atomically."""
        booster = self._fitted()
        meta = {"features": self.features, "categorical": self.categorical,
                "categories": {k: [_jsonable(v) for v in vals] for k, vals in self.categories.items()},
                "config": self.config.model_dump(), "fit_info": self.fit_info}
        target = Path(directory)
        with atomic_directory(target) as tmp:
            booster.save_model(str(tmp / MODEL_FILE))
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=_jsonable))
        return target

    @classmethod
    def load(cls, directory: str | Path) -> LGBMRanker:
        path = Path(directory)
        meta = json.loads((path / META_FILE).read_text())
        ranker = cls(LGBMConfig(**meta["config"]))
        ranker.booster = lgb.Booster(model_file=str(path / MODEL_FILE))
        ranker.features, ranker.categorical = list(meta["features"]), list(meta["categorical"])
        if ranker.booster.feature_name() != ranker.features:
            raise DataError(f"booster features {ranker.booster.feature_name()} != saved features {ranker.features}",
                            file=str(path / META_FILE))
        ranker.categories = {k: list(v) for k, v in meta["categories"].items()}
        ranker.fit_info = meta["fit_info"]
        return ranker


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v
