"""How much of a retrieved feature frame actually has features: the numbers a degenerate-output guard checks.

Why: a frame whose users or items are unknown to the feature views (a point-in-time join that finds nothing, e.g.
item embeddings stamped after every example) still trains and scores, on defaults, and the match variants then
tie with the baseline at AUC 0.5 without any error. These fractions make that visible.
"""

from __future__ import annotations

import pandas as pd

from features.match_features import SIMILARITY_FEATURES


def coverage(frame: pd.DataFrame, suffix: str = "") -> dict[str, float]:
    """Fractions of the rows of a retrieved frame (FeatureRepo.historical / online) without features.

    Returns rows, unknown_user and unknown_item (the frame's flags), no_match_features: rows whose embedding
    similarities (SIMILARITY_FEATURES + suffix, those present) are all NaN, i.e. no usable user profile x candidate
    embedding, and featureless: rows with any of the three. An empty frame counts as fully uncovered (1.0), so a
    guard refuses it.
    """
    n = len(frame)
    sims = [c + suffix for c in SIMILARITY_FEATURES if c + suffix in frame.columns]
    user, item = frame["unknown_user"].astype(bool), frame["unknown_item"].astype(bool)
    no_match = frame[sims].isna().all(axis=1) if sims else pd.Series(True, index=frame.index)

    def share(mask: pd.Series) -> float:
        return float(mask.mean()) if n else 1.0

    return {"rows": n, "unknown_user": share(user), "unknown_item": share(item),
            "no_match_features": share(no_match), "featureless": share(user | item | no_match)}
