"""Permutation importance of a fitted ranker: how much holdout AUC drops when one feature is shuffled.

For models without a native importance (the DLRM). ``sklearn.inspection.permutation_importance`` shuffles one
input column at a time across rows (every repeat seeded); shuffling the raw feature column moves everything
derived from it together (an id's table row, a dense value and its missing indicator). The score is the AUC
(``ranking.metrics.auc``) of the ranker's scores; pass raw scores (logits) so a calibration that ties scores
cannot change it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from ranking.metrics import auc
from ranking.ranker import Ranker

IMPORTANCE_NAME = "permutation_auc_drop"


def permutation_auc_drop(ranker: Ranker, frame: pd.DataFrame, y: np.ndarray,
                         scores: Callable[[Ranker, pd.DataFrame], np.ndarray], n_repeats: int = 5,
                         seed: int = 0) -> pd.Series:
    """Mean AUC drop per feature of `ranker` over `n_repeats` shuffles, largest first; empty when AUC is
    undefined (one class). frame: rows with every feature column; scores(ranker, frame) -> [N] scores."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2 or y.min() == y.max():
        return pd.Series(dtype=np.float64, name=IMPORTANCE_NAME)
    result = permutation_importance(ranker, frame[ranker.features], y,
                                    scoring=lambda model, X, labels: auc(labels, scores(model, X)),
                                    n_repeats=n_repeats, random_state=seed)
    drop = pd.Series(result.importances_mean, index=ranker.features, name=IMPORTANCE_NAME)
    order = sorted(drop.index, key=lambda f: (-drop[f], f))
    return drop.loc[order]
