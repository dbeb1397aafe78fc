"""Permutation importance of a fitted ranker: how much holdout AUC drops when one feature is shuffled.

For models without a native importance (the DLRM). ``sklearn.inspection.permutation_importance`` shuffles one
input column at a time across rows (every repeat seeded); shuffling the raw feature column moves everything
derived from it together (an id's table row, a dense value and its missing indicator). The score is the AUC
(``ranking.metrics.auc``) of the ranker's scores; pass raw scores (logits) so a calibration that ties scores
cannot change it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from ranking.metrics import auc
from ranking.ranker import Ranker

IMPORTANCE_NAME = "permutation_auc_drop"


def permutation_auc_drop(ranker: Ranker, frame: pd.DataFrame, y: np.ndarray,
                         scores: Callable[[Ranker, pd.DataFrame], np.ndarray], n_repeats: int = 5,
                         seed: int = 0, features: Sequence[str] | None = None) -> pd.Series:
    """Mean AUC drop per feature of `ranker` over `n_repeats` shuffles, largest first; empty when AUC is
    undefined (one class). frame: rows with every feature column; scores(ranker, frame) -> [N] scores;
    features: shuffle only these (default: every feature of the ranker; the others keep their values)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2 or y.min() == y.max():
        return pd.Series(dtype=np.float64, name=IMPORTANCE_NAME)
    shuffled = list(features) if features is not None else list(ranker.features)
    unknown = [f for f in shuffled if f not in ranker.features]
    if unknown:
        raise ValueError(f"features {unknown} are not features of the ranker")
    fixed = frame[ranker.features].reset_index(drop=True)

    def score(model, X: pd.DataFrame, labels) -> float:
        full = fixed.copy()
        for col in shuffled:  # column by column: each keeps its dtype
            full[col] = X[col].to_numpy()
        return auc(labels, scores(model, full))

    result = permutation_importance(ranker, fixed[shuffled], y, scoring=score, n_repeats=n_repeats,
                                    random_state=seed)
    drop = pd.Series(result.importances_mean, index=shuffled, name=IMPORTANCE_NAME)
    order = sorted(drop.index, key=lambda f: (-drop[f], f))
    return drop.loc[order]
