"""Rankers as simulator policies (ranking/policy.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.policy import RankerPolicy


def test_ranker_policy_scores_candidates(experiment, frames):
    train, _ = frames
    ranker = experiment.result.models["match"]
    lookup = train.groupby(["user_id", "item_id"])[[f for f in ranker.features if f not in ("user_id", "item_id")]]
    lookup = lookup.mean()
    calls = []

    def feature_fn(day, user_ids, candidates, history):
        calls.append((day, len(history)))
        keys = pd.MultiIndex.from_arrays([np.repeat(user_ids, candidates.shape[1]), candidates.ravel()])
        return lookup.reindex(keys).fillna(0.0).reset_index(names=["user_id", "item_id"])

    policy = RankerPolicy(ranker, feature_fn)
    users = np.array([3, 7, 11])
    cands = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    history = train.head(10)
    scores = policy.score(4, users, cands, history)
    assert scores.shape == (3, 4) and calls == [(4, 10)]
    np.testing.assert_array_equal(scores, ranker.predict(feature_fn(4, users, cands, history)).reshape(3, 4))
    assert scores[1, 2] == pytest.approx(ranker.predict(feature_fn(0, users[1:2], cands[1:2, 2:3], history))[0])
    assert policy.score(4, users[:0], cands[:0], history).shape == (0, 4)

    def shuffled(day, user_ids, candidates, history):
        return feature_fn(day, user_ids, candidates, history).iloc[::-1]

    with pytest.raises(ValueError, match="row-major"):
        RankerPolicy(ranker, shuffled).score(0, users, cands, history)
    with pytest.raises(ValueError, match="rows for"):
        RankerPolicy(ranker, lambda *a: feature_fn(*a).head(2)).score(0, users, cands, history)
