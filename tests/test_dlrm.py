"""Tests of the TorchRec DLRM ranker (ranking/dlrm.py) on generated frames with a known label law."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ranking.dlrm import (DLRMConfig, DLRMRanker, SparseVocab, build_kjt, build_tables, make_batch,
                          time_holdout)
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

CAT = ["user_id", "item_id", "sid_0", "sid_1", "sid_2"]


def make_frame(n: int = 15000, n_users: int = 1500, n_items: int = 400, n_dense: int = 15, seed: int = 0,
               intercept: float = -1.5, item_effect: float = 1.0) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Impressions in time order; logit = intercept + x0 - 0.5 x1 + item bias + user bias + 0.3 log1p(cnt).

    Returns (frame, features, true logit). f2 has 10% NaN (noise feature), cnt is a heavy-tailed count,
    sid_* are coarse codes of the item.
    """
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = (rng.zipf(1.3, n) % n_items).astype(np.int64)
    item_bias = np.random.default_rng(1000).normal(0, item_effect, n_items)  # fixed law across seeds
    user_bias = np.random.default_rng(2000).normal(0, 0.5, n_users)
    x = rng.normal(size=(n, n_dense))
    cnt = rng.poisson(np.exp(rng.normal(2, 1.5, n)))
    logit = intercept + x[:, 0] - 0.5 * x[:, 1] + item_bias[items] + user_bias[users] + 0.3 * np.log1p(cnt)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 86400 * 30, n)), unit="s")
    df = pd.DataFrame({"user_id": users + 10_000, "item_id": items + 500_000, "event_timestamp": ts, "label": y})
    for j in range(n_dense):
        df[f"f{j}"] = x[:, j]
    df.loc[rng.random(n) < 0.1, "f2"] = np.nan
    df["cnt"] = cnt
    df["sid_0"], df["sid_1"], df["sid_2"] = items // 100, items // 10, items % 7
    features = [f"f{j}" for j in range(n_dense)] + ["cnt"] + CAT
    return df, features, logit


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-mass bins of p."""
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, bins):
        err += len(chunk) / len(p) * abs(p[chunk].mean() - y[chunk].mean())
    return float(err)


@pytest.fixture(scope="module")
def data():
    df, features, logit = make_frame(n=15000)
    cut = 12000  # time order: the last 3000 rows are the test period
    return df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True), features, logit[cut:]


@pytest.fixture(scope="module")
def fitted(data):
    train, _, features, _ = data
    return DLRMRanker(DLRMConfig(), seed=0, device="cpu").fit(train, features, CAT)


# ------------------------------------------------------------------------------------------------ quality


def test_beats_logistic_baseline_and_reaches_auc_bar(data, fitted):
    train, test, features, true_logit = data
    p = fitted.predict(test)
    assert p.shape == (len(test),) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    auc = roc_auc_score(test["label"], p)
    oracle = roc_auc_score(test["label"], true_logit)

    numeric = [f for f in features if f not in CAT] + CAT  # ids as plain numbers: all a linear model can do
    X_tr = train[numeric].fillna(train[numeric].mean())
    mu, sd = X_tr.mean(), X_tr.std().replace(0, 1)
    lr = LogisticRegression(max_iter=2000).fit((X_tr - mu) / sd, train["label"])
    base = roc_auc_score(test["label"], lr.predict_proba((test[numeric].fillna(train[numeric].mean()) - mu) / sd)[:, 1])
    print(f"\nDLRM test AUC {auc:.4f}, logistic baseline {base:.4f}, oracle (true logit) {oracle:.4f}; "
          f"holdout AUC {fitted.fit_info['holdout_auc']:.4f}, best epoch {fitted.fit_info['best_epoch']}")
    assert auc > base + 0.03, (auc, base)
    # the oracle knows every user's bias; users have ~6 training rows each, so a fitted model stays below it
    # (a one-hot logistic regression with the true functional form reaches about oracle - 0.03 here)
    assert auc > oracle - 0.06, (auc, oracle)


def test_id_embeddings_carry_the_item_bias(data, fitted):
    """The item table must matter: shuffling item ids on the test set costs AUC."""
    _, test, _, _ = data
    auc = roc_auc_score(test["label"], fitted.predict(test))
    shuffled = test.assign(item_id=np.random.default_rng(0).permutation(test["item_id"].to_numpy()))
    assert auc - roc_auc_score(test["label"], fitted.predict(shuffled)) > 0.02
    imp = fitted.feature_importance()
    assert set(imp) == set(fitted.features)
    top3 = sorted(imp, key=imp.get, reverse=True)[:3]
    assert "f0" in top3 and "item_id" in top3, imp
    assert abs(imp["f5"]) < 0.01  # pure noise feature


@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_calibrated_on_imbalanced_labels(calibration):
    """Rare positives (~8%): mean prediction ~ positive rate and small calibration error on a later period."""
    df, features, _ = make_frame(n=15000, seed=3, intercept=-3.8)
    train, test = df.iloc[:12000], df.iloc[12000:]
    r = DLRMRanker(DLRMConfig(calibration=calibration), seed=0, device="cpu").fit(train, features, CAT)
    p, y = r.predict(test), test["label"].to_numpy()
    err = ece(y, p)
    print(f"\n[{calibration}] test positive rate {y.mean():.4f}, mean p {p.mean():.4f}, ECE {err:.4f}, "
          f"AUC {roc_auc_score(y, p):.4f}, holdout logloss raw {r.fit_info['holdout_logloss_raw']:.4f} "
          f"-> calibrated {r.fit_info['holdout_logloss_calibrated']:.4f}")
    assert 0.04 < y.mean() < 0.15
    assert abs(p.mean() - y.mean()) < 0.015
    assert err < 0.025
    assert r.calibrator["kind"] == calibration


def test_fit_time_30k_rows():
    df, features, _ = make_frame(n=30000, n_users=3000, n_items=800, seed=5)
    t0 = time.perf_counter()
    r = DLRMRanker(seed=0, device="cpu").fit(df, features, CAT)
    secs = time.perf_counter() - t0
    print(f"\nfit on 30k rows x (16 dense + 5 sparse): {secs:.1f}s, epochs run {r.fit_info['epochs_run']}")
    assert secs < 30


def test_refit_full_trains_on_all_rows(data):
    train, test, features, _ = data
    r = DLRMRanker(DLRMConfig(refit_full=True, permutation_importance=False), seed=0, device="cpu")
    r.fit(train, features, CAT)
    assert len(r.refit_history_) == r.fit_info["best_epoch"]
    # the vocabulary now covers ids first seen in the holdout period
    hold = time_holdout(train, 0.2)
    assert (r.vocabs["user_id"].lookup(train.loc[hold, "user_id"]) > 0).all()
    p = r.predict(test)
    assert roc_auc_score(test["label"], p) > 0.77
    assert abs(p.mean() - test["label"].mean()) < 0.03


def test_dcn_interaction_learns(data):
    train, test, features, _ = data
    r = DLRMRanker(DLRMConfig(interaction="dcn"), seed=0, device="cpu").fit(train, features, CAT)
    assert type(r.model).__name__ == "DLRM_DCN"
    auc = roc_auc_score(test["label"], r.predict(test))
    print(f"\nDLRM_DCN test AUC {auc:.4f}")
    assert auc > 0.75


# ------------------------------------------------------------------------------------------- robustness


def test_unknown_and_missing_ids_map_to_zero(data, fitted):
    _, test, _, _ = data
    odd = test.head(6).copy()
    odd["user_id"] = [-1, 99_999_999, 10_001, -5, 10_002, 7]     # mostly never seen
    odd["item_id"] = [123, 500_000, 456, 500_001, 789, 0]
    odd["sid_1"] = np.nan                                           # missing ids
    odd["f2"] = [np.nan, np.inf, -np.inf, 0.0, 1e9, -1e9]           # missing / extreme dense values
    p = fitted.predict(odd)
    assert p.shape == (6,) and np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    rows = fitted.vocabs["user_id"].lookup(odd["user_id"])
    assert rows[0] == 0 and rows[1] == 0 and rows[3] == 0 and rows[5] == 0
    assert fitted.vocabs["item_id"].lookup(odd["item_id"]).tolist()[::2] == [0, 0, 0]
    assert (fitted.vocabs["sid_1"].lookup(odd["sid_1"]) == 0).all()
    # string ids in an int-keyed column are unknown, not an error
    assert fitted.predict(odd.assign(item_id=["a", "b", "c", "d", "e", "f"])).shape == (6,)
    assert fitted.predict(test.iloc[:0]).shape == (0,)


def test_vocab_cap_hashes_the_tail_and_keeps_zero_for_unseen():
    col = pd.Series(np.r_[np.repeat([1, 2, 3], 50), np.arange(100, 400)])  # 3 frequent, 300 rare
    v = SparseVocab.fit(col, max_rows=64)
    assert v.num_embeddings == 64 and v.n_buckets == 8
    assert v.exact[:3].tolist() == [1, 2, 3]
    rows = v.lookup(pd.Series([1, 2, 3, 399, 250, 10_000, None]))
    assert rows[:3].tolist() == [1, 2, 3]
    assert all(1 + len(v.exact) <= r < 64 for r in rows[3:5])  # seen but beyond the cap: hashed rows
    assert rows[5] == 0 and rows[6] == 0                        # unseen / missing: row 0
    # order of the training rows does not change the mapping
    v2 = SparseVocab.fit(col.sample(frac=1.0, random_state=1), max_rows=64)
    assert np.array_equal(v.lookup(col), v2.lookup(col))
    # string ids
    s = SparseVocab.fit(pd.Series(["a", "b", "b", None]), max_rows=10)
    assert s.kind == "str" and s.lookup(pd.Series(["b", "a", "zz", None])).tolist() == [1, 2, 0, 0]
    s = SparseVocab.fit(pd.Series([f"id{i}" for i in range(50)] + ["x"] * 5), max_rows=16)
    rows = s.lookup(pd.Series(["x", "id7", "id49", "never"]))
    assert rows[0] == 1 and all(1 + len(s.exact) <= r < 16 for r in rows[1:3]) and rows[3] == 0


def test_dense_preprocessing_uses_fit_part_only(data, fitted):
    train, _, _, _ = data
    sc = fitted.scaler
    j = sc.columns.index("cnt")
    assert sc.log1p[j] and not sc.log1p[sc.columns.index("f0")]     # counts get log1p, gaussians do not
    assert sc.indicator[sc.columns.index("f2")] and "f2__missing" in sc.output_names
    hold = time_holdout(train, 0.2)
    fit_part = train[~hold]
    assert sc.mean[j] == pytest.approx(np.log1p(fit_part["cnt"]).mean())
    assert sc.mean[j] != pytest.approx(np.log1p(train["cnt"]).mean(), abs=1e-9)
    X = sc.transform(train)
    assert X.dtype == np.float32 and X.shape == (len(train), len(sc.output_names)) and np.isfinite(X).all()
    assert fitted.fit_info["n_holdout"] == int(hold.sum())
    assert train.loc[hold, "event_timestamp"].min() >= train.loc[~hold, "event_timestamp"].max()


def test_no_categorical_or_no_dense_features(data):
    train, test, _, _ = data
    r = DLRMRanker(DLRMConfig(epochs=2), seed=0, device="cpu").fit(train, ["f0", "f1"], [])
    assert roc_auc_score(test["label"], r.predict(test)) > 0.6
    r = DLRMRanker(DLRMConfig(epochs=2), seed=0, device="cpu").fit(train, ["item_id"], ["item_id"])
    assert r.scaler.output_names == ["__const__"]
    assert roc_auc_score(test["label"], r.predict(test)) > 0.6


def test_bad_input_is_reported(data):
    train, _, features, _ = data
    from recsys.data.errors import DataError

    with pytest.raises(DataError, match="nope"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(train, features + ["nope"], CAT)
    with pytest.raises(DataError, match="label"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(train.assign(label=train["label"] * 2), features, CAT)
    with pytest.raises(DataError, match="not in the feature list"):
        DLRMRanker(DLRMConfig(epochs=1)).fit(train, ["f0"], ["item_id"])


# ------------------------------------------------------------------------------- determinism, persistence


def test_deterministic_under_seed(data, fitted):
    train, test, features, _ = data
    again = DLRMRanker(DLRMConfig(), seed=0, device="cpu").fit(train, features, CAT)
    assert np.array_equal(fitted.predict(test), again.predict(test))
    assert fitted.feature_importance() == again.feature_importance()
    other = DLRMRanker(DLRMConfig(), seed=1, device="cpu").fit(train, features, CAT)
    assert not np.allclose(fitted.predict(test), other.predict(test))


@pytest.mark.parametrize("calibration", ["platt", "isotonic", "none"])
def test_save_load_round_trip(tmp_path, data, calibration):
    train, test, features, _ = data
    # string ids and a capped, hashed table go through the files too
    train = train.assign(user_id="u" + train["user_id"].astype(str))
    test = test.assign(user_id="u" + test["user_id"].astype(str))
    r = DLRMRanker(DLRMConfig(epochs=2, calibration=calibration, max_vocab_per_feature=300), seed=0,
                   device="cpu").fit(train, features, CAT)
    assert r.vocabs["user_id"].n_buckets > 0
    out = r.save(tmp_path / "dlrm")
    assert sorted(p.name for p in out.iterdir()) == ["dlrm.json", "model.safetensors", "vocab.npz"]
    back = DLRMRanker.load(out, device="cpu")
    assert np.array_equal(r.predict(test), back.predict(test))
    assert back.feature_importance() == r.feature_importance()
    assert back.cfg == r.cfg and back.features == r.features
    r.save(tmp_path / "dlrm")  # overwrite in place
    assert np.array_equal(r.predict(test), DLRMRanker.load(out, device="cpu").predict(test))


# -------------------------------------------------------------------------------------- TorchRec pieces


def test_kjt_batch_layout():
    keys = ["user_id", "item_id", "sid_0"]
    ids = torch.tensor([[1, 10, 100], [2, 20, 200], [3, 30, 300], [4, 40, 400]])
    kjt = build_kjt(ids, keys)
    assert isinstance(kjt, KeyedJaggedTensor)
    assert kjt.keys() == keys
    assert kjt.lengths().tolist() == [1] * 12
    assert kjt.stride() == 4
    assert kjt.values().tolist() == [1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 300, 400]  # key-major
    assert kjt["item_id"].values().tolist() == [10, 20, 30, 40]
    batch = make_batch(torch.zeros(4, 5), ids, keys, torch.ones(4))
    assert batch.dense_features.shape == (4, 5) and batch.labels.tolist() == [1.0] * 4
    tables = build_tables({"user_id": 5, "item_id": 50, "sid_0": 500}, embedding_dim=8)
    assert [t.name for t in tables] == ["t_user_id", "t_item_id", "t_sid_0"]
    pooled = EmbeddingBagCollection(tables=tables)(kjt)
    assert isinstance(pooled, KeyedTensor) and pooled.keys() == keys
    assert pooled["item_id"].shape == (4, 8)
    with pytest.raises(ValueError):
        build_kjt(ids, keys[:2])


def test_fitted_model_reads_the_expected_features(fitted):
    ebc = fitted.model.sparse_arch.embedding_bag_collection
    assert [c.feature_names[0] for c in ebc.embedding_bag_configs()] == CAT
    assert all(c.embedding_dim == 16 for c in ebc.embedding_bag_configs())
    sizes = {c.feature_names[0]: c.num_embeddings for c in ebc.embedding_bag_configs()}
    assert sizes == fitted.fit_info["table_sizes"]


def test_config_validation():
    cfg = DLRMConfig()
    assert (cfg.embedding_dim, cfg.dense_arch, cfg.over_arch, cfg.calibration, cfg.interaction) == \
        (16, [64, 16], [64, 1], "platt", "dot")
    with pytest.raises(ValidationError, match="unknown_key"):
        DLRMConfig(unknown_key=1)
    with pytest.raises(ValidationError, match="dense_arch"):
        DLRMConfig(embedding_dim=8)
    with pytest.raises(ValidationError, match="over_arch"):
        DLRMConfig(over_arch=[64, 2])
    with pytest.raises(ValidationError, match="calibration"):
        DLRMConfig(calibration="beta")
