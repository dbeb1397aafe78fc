"""Both rankers through the Ranker protocol (ranking/ranker.py, ranking/registry.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.dlrm import DLRMConfig
from ranking.lgbm import LGBMConfig
from ranking.ranker import RANKER_KINDS
from ranking.registry import RANKER_TYPES, load_ranker, new_ranker

CONFIGS = {"lgbm": LGBMConfig(num_boost_round=50, seed=0),
           "dlrm": DLRMConfig(epochs=2, permutation_importance=True, permutation_repeats=1)}


def test_every_kind_has_an_implementation():
    assert set(RANKER_TYPES) == set(RANKER_KINDS)
    assert all(cls.kind == kind for kind, cls in RANKER_TYPES.items())


@pytest.mark.parametrize("kind", RANKER_KINDS)
def test_fit_predict_importance_save_load(kind, frames, tmp_path):
    train, test = frames
    feats, cats = ["user_id", "item_positive_rate", "cos_mean"], ["user_id"]
    ranker = new_ranker(kind, CONFIGS[kind]).fit(train, feats, cats)
    assert ranker.kind == kind and ranker.features == feats and ranker.categorical == cats
    p = ranker.predict(test)
    assert p.shape == (len(test),) and np.all((p > 0) & (p < 1))
    imp = ranker.feature_importance()
    assert set(imp.index) == set(feats) and imp.is_monotonic_decreasing and imp.name
    assert ranker.fit_info["n_train"] == len(train)
    back = load_ranker(kind, ranker.save(tmp_path / kind))
    np.testing.assert_array_equal(back.predict(test), p)
    assert back.config == ranker.config


def test_bad_kind_or_config():
    with pytest.raises(ValueError, match="unknown ranker 'xgb'"):
        new_ranker("xgb")
    with pytest.raises(TypeError, match="LGBMConfig"):
        new_ranker("lgbm", DLRMConfig())
    assert new_ranker("dlrm").config == DLRMConfig()
