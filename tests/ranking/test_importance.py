"""Permutation importance (ranking/importance.py) on a model whose dependence on each feature is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.importance import IMPORTANCE_NAME, permutation_auc_drop
from ranking.metrics import auc


class UsesX:
    """Scores with column x only (y and z are ignored)."""

    features = ["x", "y", "z"]

    def fit(self, *args):
        return self

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["x"].to_numpy()


def test_only_the_used_feature_matters():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["x", "y", "z"])
    labels = (rng.random(3000) < 1 / (1 + np.exp(-2 * frame["x"]))).astype(float)
    model = UsesX()
    imp = permutation_auc_drop(model, frame, labels, UsesX.scores, n_repeats=3, seed=0)
    assert imp.name == IMPORTANCE_NAME and list(imp.index) == ["x", "y", "z"]  # ties by name
    assert imp["y"] == 0 and imp["z"] == 0                                # shuffling an unused column: no change
    assert imp["x"] > 0.8 * (auc(labels, frame["x"]) - 0.5)               # shuffled x scores like chance
    assert imp.equals(permutation_auc_drop(model, frame, labels, UsesX.scores, n_repeats=3, seed=0))


def test_undefined_with_one_class():
    frame = pd.DataFrame({"x": [0.1, 0.2], "y": [0, 1], "z": [1, 2]})
    assert permutation_auc_drop(UsesX(), frame, np.ones(2), UsesX.scores).empty


def test_a_subset_of_features_is_shuffled_alone_and_scores_the_same():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(2000, 3)), columns=["x", "y", "z"])
    labels = (rng.random(2000) < 1 / (1 + np.exp(-2 * frame["x"]))).astype(float)
    full = permutation_auc_drop(UsesX(), frame, labels, UsesX.scores, n_repeats=3, seed=0)
    part = permutation_auc_drop(UsesX(), frame, labels, UsesX.scores, n_repeats=3, seed=0, features=["x", "z"])
    assert list(part.index) == ["x", "z"] and part["x"] == full["x"] and part["z"] == 0
    with pytest.raises(ValueError, match=r"features \['w'\] are not features of the ranker"):
        permutation_auc_drop(UsesX(), frame, labels, UsesX.scores, features=["w"])
