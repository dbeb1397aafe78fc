"""The TorchRec DLRM ranker (ranking/dlrm.py) on generated frames with a known label law."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import ranking.dlrm as dlrm_mod
from ranking.dlrm import DLRMConfig, DLRMRanker
from ranking.holdout import time_holdout
from recsys.errors import DataError

QUIET = {"permutation_importance": False}
"""Tests that do not look at the importance skip its cost."""


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-mass bins of p."""
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, bins):
        err += len(chunk) / len(p) * abs(p[chunk].mean() - y[chunk].mean())
    return float(err)


@pytest.fixture(scope="module")
def fitted(dlrm_frames):
    d = dlrm_frames
    return DLRMRanker(DLRMConfig(), device="cpu").fit(d.train, d.features, d.categorical)


# ------------------------------------------------------------------------------------------------ quality


def test_beats_logistic_baseline_and_reaches_auc_bar(dlrm_frames, fitted):
    d = dlrm_frames
    p = fitted.predict(d.test)
    assert p.shape == (len(d.test),) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    auc = roc_auc_score(d.test["label"], p)
    oracle = roc_auc_score(d.test["label"], d.true_logit)

    numeric = [f for f in d.features if f not in d.categorical] + d.categorical  # ids as numbers: all a linear
    X_tr = d.train[numeric].fillna(d.train[numeric].mean())                      # model can do with them
    mu, sd = X_tr.mean(), X_tr.std().replace(0, 1)
    lr = LogisticRegression(max_iter=2000).fit((X_tr - mu) / sd, d.train["label"])
    X_te = (d.test[numeric].fillna(d.train[numeric].mean()) - mu) / sd
    base = roc_auc_score(d.test["label"], lr.predict_proba(X_te)[:, 1])
    assert auc > base + 0.03, (auc, base)
    # the oracle knows every user's bias; users have ~6 training rows each, so a fitted model stays below it
    # (a one-hot logistic regression with the true functional form reaches about oracle - 0.03 here)
    assert auc > oracle - 0.06, (auc, oracle)


def test_id_embeddings_carry_the_item_bias(dlrm_frames, fitted):
    """The item table must matter: shuffling item ids on the test set costs AUC, and the importance says so."""
    test = dlrm_frames.test
    auc = roc_auc_score(test["label"], fitted.predict(test))
    shuffled = test.assign(item_id=np.random.default_rng(0).permutation(test["item_id"].to_numpy()))
    assert auc - roc_auc_score(test["label"], fitted.predict(shuffled)) > 0.02
    imp = fitted.feature_importance()
    assert set(imp.index) == set(fitted.features) and imp.is_monotonic_decreasing
    assert {"f0", "item_id"} <= set(imp.index[:3]), imp
    assert abs(imp["f5"]) < 0.01  # pure noise feature


@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_calibrated_on_imbalanced_labels(make_dlrm_frame, calibration):
    """Rare positives (~10%): mean prediction ~ positive rate and small calibration error on a later period."""
    df, features, _ = make_dlrm_frame(n=15000, seed=3, intercept=-3.8)
    train, test = df.iloc[:12000], df.iloc[12000:]
    cats = [f for f in features if f in ("user_id", "item_id") or f.startswith("sid_")]
    r = DLRMRanker(DLRMConfig(calibration=calibration, **QUIET), device="cpu").fit(train, features, cats)
    p, y = r.predict(test), test["label"].to_numpy()
    assert 0.04 < y.mean() < 0.15
    assert abs(p.mean() - y.mean()) < 0.015
    assert ece(y, p) < 0.025
    assert r.fit_info["calibration"] == calibration
    assert r.fit_info["holdout_logloss_calibrated"] <= r.fit_info["holdout_logloss_raw"] + 1e-9


def test_refit_full_trains_on_all_rows(dlrm_frames):
    d = dlrm_frames
    r = DLRMRanker(DLRMConfig(refit_full=True, **QUIET), device="cpu").fit(d.train, d.features, d.categorical)
    assert r.fit_info["refit_epochs"] == r.fit_info["best_epoch"]
    # the id encoder now covers users first seen in the holdout period
    hold = time_holdout(d.train, 0.2)
    _, rows = r.preprocessor.transform(d.train.loc[hold])
    assert (rows[:, d.categorical.index("user_id")] > 0).all()
    p = r.predict(d.test)
    assert roc_auc_score(d.test["label"], p) > 0.77
    assert abs(p.mean() - d.test["label"].mean()) < 0.03


def test_dcn_interaction_learns(dlrm_frames):
    d = dlrm_frames
    r = DLRMRanker(DLRMConfig(interaction="dcn", **QUIET), device="cpu").fit(d.train, d.features, d.categorical)
    assert type(r.model).__name__ == "DLRM_DCN"
    assert roc_auc_score(d.test["label"], r.predict(d.test)) > 0.75


# ------------------------------------------------------------------------------------------- robustness


def test_unknown_missing_and_extreme_inputs_predict(dlrm_frames, fitted):
    odd = dlrm_frames.test.head(6).copy()
    odd["user_id"] = [-1, 99_999_999, 10_001, -5, 10_002, 7]     # mostly never seen
    odd["sid_1"] = np.nan                                           # missing ids
    odd["f2"] = [np.nan, np.inf, -np.inf, 0.0, 1e9, -1e9]           # missing / extreme dense values
    p = fitted.predict(odd)
    assert p.shape == (6,) and np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    # string ids in an int-keyed column are unknown, not an error
    assert fitted.predict(odd.assign(item_id=["a", "b", "c", "d", "e", "f"])).shape == (6,)
    assert fitted.predict(odd.iloc[:0]).shape == (0,)


def test_no_categorical_or_no_dense_features(dlrm_frames):
    d = dlrm_frames
    cfg = DLRMConfig(epochs=2, **QUIET)
    r = DLRMRanker(cfg, device="cpu").fit(d.train, ["f0", "f1"], [])
    assert roc_auc_score(d.test["label"], r.predict(d.test)) > 0.6
    r = DLRMRanker(cfg, device="cpu").fit(d.train, ["item_id"], ["item_id"])
    assert r.preprocessor.dense_names == ["__const__"]
    assert roc_auc_score(d.test["label"], r.predict(d.test)) > 0.6


def test_bad_input_is_reported(dlrm_frames):
    d = dlrm_frames
    with pytest.raises(DataError, match="nope"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(d.train, d.features + ["nope"], d.categorical)
    with pytest.raises(DataError, match="label"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(d.train.assign(label=d.train["label"] * 2), d.features, d.categorical)
    with pytest.raises(DataError, match="not in the feature list"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(d.train, ["f0"], ["item_id"])
    with pytest.raises(DataError, match="event_timestamp"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(d.train.drop(columns="event_timestamp"), ["f0"], [])


# ---------------------------------------------------------------------- determinism, threads, persistence


def test_deterministic_under_seed_and_leaves_global_random_state(dlrm_frames, fitted):
    d = dlrm_frames
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(3), np.random.random(3), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    again = DLRMRanker(DLRMConfig(), device="cpu").fit(d.train, d.features, d.categorical)
    after = (torch.rand(3), np.random.random(3), random.random())
    assert torch.equal(expected[0], after[0]) and np.array_equal(expected[1], after[1]) and expected[2] == after[2]
    np.testing.assert_array_equal(fitted.predict(d.test), again.predict(d.test))
    assert fitted.feature_importance().equals(again.feature_importance())
    other = DLRMRanker(DLRMConfig(seed=1, **QUIET), device="cpu").fit(d.train, d.features, d.categorical)
    assert not np.allclose(fitted.predict(d.test), other.predict(d.test))


def test_trains_with_its_thread_count_and_restores_the_callers(dlrm_frames, monkeypatch):
    d = dlrm_frames
    seen = []
    real = dlrm_mod.train_dlrm

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)

    monkeypatch.setattr(dlrm_mod, "train_dlrm", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        DLRMRanker(DLRMConfig(epochs=1, **QUIET), device="cpu").fit(d.train, ["f0", "item_id"], ["item_id"])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("calibration", ["platt", "isotonic", "none"])
def test_save_load_round_trip(tmp_path, dlrm_frames, calibration):
    d = dlrm_frames
    # string ids and a capped table (rare users share the infrequent row) go through the files too
    train = d.train.assign(user_id="u" + d.train["user_id"].astype(str))
    test = d.test.assign(user_id="u" + d.test["user_id"].astype(str))
    r = DLRMRanker(DLRMConfig(epochs=2, calibration=calibration, max_vocab_per_feature=300,
                              permutation_repeats=1), device="cpu")
    r.fit(train, d.features, d.categorical)
    assert r.fit_info["table_sizes"]["user_id"] == 300
    out = r.save(tmp_path / "dlrm")
    assert sorted(p.name for p in out.iterdir()) == ["calibrator.skops", "dlrm.json", "model.safetensors",
                                                     "preprocessor.skops"]
    back = DLRMRanker.load(out, device="cpu")
    np.testing.assert_array_equal(r.predict(test), back.predict(test))
    assert back.feature_importance().equals(r.feature_importance())
    assert back.config == r.config and back.features == r.features and back.fit_info == r.fit_info
    r.save(tmp_path / "dlrm")  # overwrite in place
    np.testing.assert_array_equal(r.predict(test), DLRMRanker.load(out, device="cpu").predict(test))


def test_fitted_model_reads_the_expected_features(dlrm_frames, fitted):
    ebc = fitted.model.sparse_arch.embedding_bag_collection
    assert [c.feature_names[0] for c in ebc.embedding_bag_configs()] == dlrm_frames.categorical
    assert all(c.embedding_dim == 16 for c in ebc.embedding_bag_configs())
    sizes = {c.feature_names[0]: c.num_embeddings for c in ebc.embedding_bag_configs()}
    assert sizes == fitted.fit_info["table_sizes"]
    # one row per id of the fit part (the holdout's new ids stay unknown) + the unknown row
    fit_part = dlrm_frames.train.loc[~time_holdout(dlrm_frames.train, 0.2)]
    assert sizes["item_id"] == fit_part["item_id"].nunique() + 1


def test_config_validation():
    cfg = DLRMConfig()
    assert (cfg.embedding_dim, cfg.dense_arch, cfg.over_arch, cfg.calibration, cfg.interaction, cfg.num_threads) == \
        (16, [64, 16], [64, 1], "platt", "dot", 1)
    with pytest.raises(ValidationError, match="unknown_key"):
        DLRMConfig(unknown_key=1)
    with pytest.raises(ValidationError, match="dense_arch"):
        DLRMConfig(embedding_dim=8)
    with pytest.raises(ValidationError, match="over_arch"):
        DLRMConfig(over_arch=[64, 2])
    with pytest.raises(ValidationError, match="calibration"):
        DLRMConfig(calibration="beta")
    with pytest.raises(ValidationError, match="num_threads"):
        DLRMConfig(num_threads=0)
