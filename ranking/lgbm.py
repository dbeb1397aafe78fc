"""LightGBM ranker: a binary classifier of "is this impression positive" over a feature frame.

- Objective ``binary`` (pointwise CTR-style ranker); scores are probabilities, so log loss and calibration mean
  something.
- Early stopping on a time-ordered holdout carved out of the TRAINING frame only: rows whose time is in the last
  ``holdout_fraction`` (20%) of the frame by time are the holdout (all rows sharing the cut-off time go to the
  holdout, so no timestamp is split). The test frame is never seen while fitting. With ``refit_full=True`` the
  model is refit on the whole training frame for the early-stopped number of rounds.
- Categorical features: id-like columns (``user_id``/``item_id`` in the "ids" baseline, ``sid_0..`` semantic
  IDs) are cast to pandas ``category`` with the categories seen in the training frame. LightGBM stores these
  categories inside the model (``pandas_categorical``), so a reloaded booster maps them the same way; unseen
  values become missing. Use :func:`prepare_frame` before calling a bare booster's ``predict``.
- Deterministic: ``deterministic=True``, ``force_row_wise=True``, fixed ``num_threads`` and ``seed``.
- Native ``lgb.train`` API (LightGBM 4.7 deprecates ``eval_set=`` of the sklearn ``fit``).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


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
    num_threads: int = Field(2, ge=1)
    seed: int = 0

    def lgb_params(self) -> dict[str, Any]:
        """Parameters passed to ``lgb.train`` (everything except the training-loop settings)."""
        skip = {"num_boost_round", "early_stopping_rounds", "holdout_fraction", "refit_full"}
        params = {k: v for k, v in self.model_dump().items() if k not in skip}
        params.update(objective="binary", metric=["binary_logloss", "auc"], deterministic=True,
                      force_row_wise=True, verbosity=-1, first_metric_only=True)
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


def time_holdout(frame: pd.DataFrame, fraction: float, time_col: str = "event_timestamp") -> np.ndarray:
    """Boolean mask of the holdout: rows at or after the time quantile (1 - fraction) of `time_col`.

    Whole timestamps go to one side. If that leaves an empty side (e.g. one timestamp), the last rows in
    stable time order form the holdout instead.
    """
    n = len(frame)
    if n < 2:
        raise ValueError(f"need at least 2 training rows for a time holdout, got {n}")
    ts = frame[time_col].to_numpy()
    order = np.argsort(ts, kind="stable")
    cut_pos = min(n - 1, max(1, int(np.floor(n * (1 - fraction)))))
    cut_time = ts[order[cut_pos]]
    mask = ts >= cut_time
    if mask.all() or not mask.any():
        mask = np.zeros(n, dtype=bool)
        mask[order[cut_pos:]] = True
    return mask


class LGBMRanker:
    """Fit/predict wrapper around a LightGBM binary booster.

    >>> ranker = LGBMRanker(LGBMConfig(seed=1)).fit(train_frame, ["item_pos_rate", "cos_mean"], categorical=[])
    >>> p = ranker.predict(test_frame)            # [N] probabilities
    >>> ranker.feature_importance()               # DataFrame[feature, gain, split], by gain
    """

    def __init__(self, config: LGBMConfig | None = None):
        self.config = config or LGBMConfig()
        self.booster: lgb.Booster | None = None
        self.features: list[str] = []
        self.categorical: list[str] = []
        self.categories: dict[str, list] = {}
        self.best_iteration: int = 0
        self.fit_info: dict[str, Any] = {}
        self.holdout_index_: pd.Index | None = None
        self.evals_result_: dict = {}

    # ------------------------------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] = (),
            label: str = "label", time_col: str = "event_timestamp") -> "LGBMRanker":
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
            raise ValueError(f"label column '{label}' must be 0/1")
        cfg = self.config
        self.features, self.categorical = features, categorical
        self.categories = {c: sorted(pd.unique(frame[c].dropna()).tolist()) for c in categorical}
        X = prepare_frame(frame, features, categorical, self.categories)

        hold = time_holdout(frame, cfg.holdout_fraction, time_col)
        self.holdout_index_ = frame.index[hold]
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
        self.evals_result_ = evals
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
        self.booster, self.best_iteration = booster, best
        return self

    # ------------------------------------------------------------------------------------- predict
    def _check(self) -> lgb.Booster:
        if self.booster is None:
            raise RuntimeError("LGBMRanker is not fitted")
        return self.booster

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The exact model input for `frame` (what a reloaded booster's predict expects)."""
        return prepare_frame(frame, self.features, self.categorical, self.categories or None)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] float64 probabilities of a positive, one per row of `frame`."""
        booster = self._check()
        if len(frame) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(booster.predict(self.prepare(frame)), dtype=np.float64)

    def feature_importance(self) -> pd.DataFrame:
        """DataFrame[feature, gain, split, gain_share], sorted by gain (descending)."""
        b = self._check()
        gain = b.feature_importance("gain")
        df = pd.DataFrame({"feature": b.feature_name(), "gain": gain.astype(np.float64),
                           "split": b.feature_importance("split").astype(np.int64)})
        total = df["gain"].sum()
        df["gain_share"] = df["gain"] / total if total > 0 else 0.0
        return df.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------------------------------- metadata
    def metadata(self, include_categories: bool = False) -> dict[str, Any]:
        """What is needed to rebuild the wrapper around a reloaded booster (JSON-able).

        Categories are optional: the booster stores them itself (``pandas_categorical``).
        """
        meta = {"features": list(self.features), "categorical": list(self.categorical),
                "best_iteration": int(self.best_iteration), "config": self.config.model_dump()}
        if include_categories:
            meta["categories"] = {k: [_jsonable(v) for v in vals] for k, vals in self.categories.items()}
        return meta

    @classmethod
    def from_booster(cls, booster: lgb.Booster, metadata: dict[str, Any]) -> "LGBMRanker":
        """Wrap a (reloaded) booster with the `metadata()` it was saved with."""
        r = cls(LGBMConfig(**metadata.get("config", {})))
        r.booster = booster
        r.features = list(metadata["features"])
        r.categorical = list(metadata.get("categorical", []))
        if booster.feature_name() != r.features:
            raise ValueError(f"booster features {booster.feature_name()} != metadata features {r.features}")
        if "categories" in metadata:
            r.categories = {k: list(v) for k, v in metadata["categories"].items()}
        else:
            stored = getattr(booster, "pandas_categorical", None) or []
            cat_in_order = [f for f in r.features if f in r.categorical]
            if len(stored) != len(cat_in_order):
                raise ValueError(f"booster stores {len(stored)} categorical columns, metadata names {cat_in_order}")
            r.categories = {c: list(v) for c, v in zip(cat_in_order, stored)}
        r.best_iteration = int(metadata.get("best_iteration", booster.current_iteration()))
        return r

    def metadata_json(self) -> str:
        return json.dumps(self.metadata(include_categories=True))


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v
