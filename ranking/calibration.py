"""Calibration of raw ranker scores (logits) into probabilities, fitted on the ranker's time holdout.

- ``platt``: scikit-learn ``LogisticRegression`` on the logit (Platt scaling); keeps the ranking, fixes the
  scale and the base rate (the DLRM trains without class re-weighting, so this is mostly a small correction).
- ``isotonic``: ``IsotonicRegression`` (monotone, piecewise constant; clipped outside the fitted range).
- ``none``: the sigmoid of the logit.
A holdout with a single class cannot be calibrated; the sigmoid is used then (logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import skops.io as sio
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["platt", "isotonic", "none"]
EPS = 1e-6
"""Probabilities are kept inside [EPS, 1 - EPS] so log loss stays finite."""


class LogitCalibrator:
    """logits [N] -> calibrated probabilities [N]; `method` is what was asked, `fitted_method` what was fitted."""

    def __init__(self, method: CalibrationMethod = "platt"):
        self.method: CalibrationMethod = method
        self.fitted_method: CalibrationMethod = "none"
        self.model: BaseEstimator | None = None

    def fit(self, logits: np.ndarray, y: np.ndarray) -> LogitCalibrator:
        logits, y = np.asarray(logits, np.float64), np.asarray(y, np.float64)
        self.model, self.fitted_method = None, "none"
        if self.method == "none":
            return self
        if len(y) < 2 or y.min() == y.max():
            logger.warning("calibration holdout has a single class; using the sigmoid of the logit")
            return self
        if self.method == "platt":
            self.model = LogisticRegression(C=1e4, max_iter=1000).fit(logits.reshape(-1, 1), y.astype(int))
        else:
            self.model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(logits, y)
        self.fitted_method = self.method
        return self

    def predict(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, np.float64)
        if len(logits) == 0:
            return np.zeros(0, dtype=np.float64)
        if isinstance(self.model, LogisticRegression):
            p = self.model.predict_proba(logits.reshape(-1, 1))[:, 1]
        elif isinstance(self.model, IsotonicRegression):
            p = self.model.predict(logits)
        else:
            p = expit(logits)
        return np.clip(p, EPS, 1 - EPS).astype(np.float64)

    def save(self, path: str | Path) -> None:
        """skops file (no pickle): the fitted scikit-learn model and the method."""
        sio.dump({"method": self.method, "fitted_method": self.fitted_method, "model": self.model}, path)

    @classmethod
    def load(cls, path: str | Path) -> LogitCalibrator:
        state = sio.load(path)
        calibrator = cls(state["method"])
        calibrator.fitted_method, calibrator.model = state["fitted_method"], state["model"]
        return calibrator
