"""The LightGBM ranker (ranking/lgbm.py): determinism, categoricals, importance, persistence, threads."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.lgbm import LGBMConfig, LGBMRanker, prepare_frame
from recsys.runtime import available_cores

FEATS = ["user_id", "item_id", "item_positive_rate", "cos_mean", "sid_0"]
CATS = ["user_id", "item_id", "sid_0"]


@pytest.fixture(scope="module")
def ranker(frames, fast_lgbm):
    return LGBMRanker(fast_lgbm).fit(frames[0], FEATS, CATS)


def test_ranker_is_deterministic_and_uses_categoricals(frames, fast_lgbm, ranker):
    train, test = frames
    again = LGBMRanker(fast_lgbm).fit(train, FEATS, CATS)
    assert ranker.booster.model_to_string() == again.booster.model_to_string()
    np.testing.assert_array_equal(ranker.predict(test), again.predict(test))
    other = LGBMRanker(fast_lgbm.model_copy(update={"seed": 5})).fit(train, FEATS, CATS)
    assert not np.array_equal(ranker.predict(test), other.predict(test))     # seed drives bagging
    # categorical: the booster stores the training categories; an unseen sid value is treated as missing
    assert len(ranker.booster.pandas_categorical) == 3
    assert ranker.booster.pandas_categorical[2] == sorted(train["sid_0"].unique().tolist())
    assert np.isfinite(ranker.predict(test.head(5).assign(sid_0=99))).all()


def test_feature_importance_is_gain_largest_first(ranker):
    imp = ranker.feature_importance()
    assert imp.name == "gain" and set(imp.index) == set(FEATS) and imp.is_monotonic_decreasing
    np.testing.assert_allclose(imp.sum(), ranker.booster.feature_importance("gain").sum())
    assert imp.index[0] in ("cos_mean", "item_positive_rate")


def test_save_load_round_trip(tmp_path, frames, ranker):
    _, test = frames
    out = ranker.save(tmp_path / "lgbm")
    assert sorted(p.name for p in out.iterdir()) == ["lgbm.json", "model.txt"]
    back = LGBMRanker.load(out)
    np.testing.assert_array_equal(back.predict(test), ranker.predict(test))
    np.testing.assert_array_equal(back.predict(test.head(5).assign(sid_0=99)),
                                  ranker.predict(test.head(5).assign(sid_0=99)))
    assert back.config == ranker.config and back.categories == ranker.categories
    assert back.fit_info == ranker.fit_info and back.feature_importance().equals(ranker.feature_importance())


def test_fit_info_and_refit_full(frames, fast_lgbm, ranker):
    train, test = frames
    info = ranker.fit_info
    assert info["n_fit"] + info["n_holdout"] == len(train) and 1 <= info["best_iteration"] < 300
    refit = LGBMRanker(fast_lgbm.model_copy(update={"refit_full": True})).fit(train, FEATS, CATS)
    assert refit.booster.current_iteration() == refit.fit_info["best_iteration"]
    assert not np.array_equal(refit.predict(test), ranker.predict(test))   # trained on the holdout rows too


def test_threads_default_to_one_and_none_means_the_usable_cores():
    assert LGBMConfig().lgb_params()["num_threads"] == 1                   # results independent of the machine
    assert LGBMConfig(num_threads=None).lgb_params()["num_threads"] == available_cores()
    assert LGBMConfig(num_threads=1).lgb_params()["num_threads"] == 1
    with pytest.raises(ValueError, match="num_threads"):
        LGBMConfig(num_threads=0)


def test_prepare_frame_names_missing_columns(frames):
    train, _ = frames
    with pytest.raises(KeyError, match="cos_nope"):
        prepare_frame(train, ["item_positive_rate", "cos_nope"])
    with pytest.raises(ValueError, match="label"):
        LGBMRanker().fit(train.assign(label=2), ["cos_mean"])
