"""What a ranker is, for the experiment, MLflow tracking and the lifetime simulator: the `Ranker` protocol.

A ranker is a pointwise "is this impression positive" model over a feature frame. It fits on the frame of one
period (early stopping, and calibration where it has one, on the latest part of that frame by time:
`ranking.holdout.time_holdout`), predicts one probability per row, reports a feature importance, and saves to
and loads from a directory. `ranking.lgbm.LGBMRanker` and `ranking.dlrm.DLRMRanker` implement it;
`ranking.registry` maps the kind names below to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel

RankerKind = Literal["lgbm", "dlrm"]
RANKER_KINDS: tuple[str, ...] = get_args(RankerKind)


class Ranker(Protocol):
    """fit -> predict / feature_importance; save -> load gives a ranker that predicts the same."""

    kind: ClassVar[str]                 # one of RANKER_KINDS; names the MLflow artifact folder of the model
    config: BaseModel                   # hyper-parameters (logged as MLflow params)
    features: list[str]                 # model input columns, in model order
    categorical: list[str]              # the subset of `features` treated as ids / categories
    fit_info: dict[str, Any]            # what fitting found: n_train, holdout metrics, best_iteration, ...

    def fit(self, frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] = (),
            label: str = "label", time_col: str = "event_timestamp") -> Self: ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """[N] float64 probabilities of a positive, one per row of `frame`."""
        ...

    def feature_importance(self) -> pd.Series:
        """Importance per feature (index), largest first; the Series name says what is measured."""
        ...

    def save(self, directory: str | Path) -> Path: ...

    @classmethod
    def load(cls, directory: str | Path) -> Self: ...
