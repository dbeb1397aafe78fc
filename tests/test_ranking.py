"""Ranking stage: examples, LightGBM ranker, experiment + MLflow logging, simulator policy adapter.

Feature frames are generated here (no Feast, no simulator): a hidden user x item affinity drives the label and is
visible only through the "match" feature `cos_mean`, so the match variant must beat the baseline.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ranking import lgbm as lgbm_mod
from ranking.examples import labelled_examples
from ranking.experiment import (VariantSpec, default_variants, load_logged_ranker, log_lifetime, mlflow_uri_for,
                                run_experiment)
from ranking.lgbm import LGBMConfig, LGBMRanker, prepare_frame, time_holdout
from ranking.policy import RankerPolicy

N_USERS, N_ITEMS = 150, 80
FAST = LGBMConfig(num_boost_round=300, early_stopping_rounds=20, learning_rate=0.1, seed=0)


def make_frame(n: int, start: str, seed: int, index_offset: int = 0) -> pd.DataFrame:
    """Examples with id, statistics, match and semantic-ID features; world fixed, events drawn by `seed`."""
    world = np.random.default_rng(123)
    item_q = world.normal(0, 1, N_ITEMS)
    user_b = world.normal(0, 0.5, N_USERS)
    ue, ie = world.normal(size=(N_USERS, 4)), world.normal(size=(N_ITEMS, 4))
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, N_USERS, n), rng.integers(0, N_ITEMS, n)
    affinity = (ue[u] * ie[i]).sum(1) / 2
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.6 * item_q[i] + user_b[u] + 1.5 * affinity)))).astype(np.int8)
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 7 * 86400, n)), unit="s")
    return pd.DataFrame({
        "user_id": u.astype(np.int64), "item_id": i.astype(np.int64), "event_timestamp": ts, "label": y,
        "item_impressions": rng.poisson(50, n).astype(float),
        "item_positive_rate": 1 / (1 + np.exp(-(item_q[i] - 1))) + rng.normal(0, 0.05, n),
        "user_positive_rate": 1 / (1 + np.exp(-(user_b[u] - 1))) + rng.normal(0, 0.05, n),
        "hist_len": rng.integers(0, 40, n).astype(float),
        "cos_mean": affinity + rng.normal(0, 0.3, n),
        "sid_0": ((ie[i, 0] > 0).astype(int) + 2 * (ie[i, 1] > 0)).astype(np.int64),
        "sid_recent_match_l0": rng.integers(0, 2, n).astype(float),
    }, index=pd.RangeIndex(index_offset, index_offset + n))


@pytest.fixture(scope="module")
def frames():
    train = make_frame(4000, "2024-01-01", seed=1)
    test = make_frame(3000, "2024-02-01", seed=2, index_offset=1_000_000)  # disjoint index: traceable rows
    return train, test


@pytest.fixture(scope="module")
def experiment(frames, tmp_path_factory):
    train, test = frames
    run_dir = tmp_path_factory.mktemp("run")
    uri = mlflow_uri_for(run_dir)
    variants = default_variants(train.columns)
    res = run_experiment(train, test, variants, mlflow_uri=uri, experiment_name="synthetic-test",
                         run_tags={"dataset": "generated"}, extra_metrics_per_variant={"match": {"ndcg_fake": 0.5}},
                         config=FAST, n_bootstrap=100, seed=0)
    return res, uri, run_dir, variants


# ---------------------------------------------------------------------------------------------- examples


def _dataset(kind: str):
    from recsys.data.dataset import build_dataset
    from recsys.data.schema import PositiveRule
    from recsys.data.split import TemporalSplit

    items = pd.DataFrame({"item_id": np.arange(5, dtype=np.int64),
                          "created_at": pd.Timestamp("2023-01-01", tz="UTC")})
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(12), unit="D")
    inter = pd.DataFrame({"user_id": np.array([1, 2, 3] * 4, dtype=np.int64),
                          "item_id": np.arange(12, dtype=np.int64) % 5, "timestamp": ts})
    if kind == "synthetic":
        inter["like"] = np.array([1, 0] * 6, dtype=np.float32)
        labels, rule = {"like": "liked"}, PositiveRule("like", 1)
    else:
        inter["rating"] = np.array([5, 3.5, 4, 1, 4.5, 2] * 2, dtype=np.float32)
        labels, rule = {"rating": "stars"}, PositiveRule("rating", 4)
    split = TemporalSplit(ts[6], ts[9])                                  # train 0-5, valid 6-8, test 9-11
    return build_dataset(name=kind, source="test", items=items, interactions=inter, labels=labels,
                         positive=rule, split=split)


def test_examples_synthetic_and_movielens_labels():
    ds = _dataset("synthetic")
    valid = labelled_examples(ds, "valid")
    assert list(valid.columns) == ["user_id", "item_id", "event_timestamp", "label"]
    assert len(valid) == 3 and valid["event_timestamp"].is_monotonic_increasing
    assert valid["event_timestamp"].min() >= ds.split.train_end
    assert valid["event_timestamp"].max() < ds.split.valid_end
    assert str(valid["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert valid["label"].tolist() == [1, 0, 1]                          # like >= 1 on rows 6, 7, 8
    test = labelled_examples(ds, "test")
    assert (test["event_timestamp"] >= ds.split.valid_end).all() and len(test) == 3
    ml = _dataset("movielens")
    assert labelled_examples(ml, "valid")["label"].tolist() == [1, 0, 1]  # ratings 5, 3.5, 4 -> rating >= 4
    assert labelled_examples(ml, "test")["label"].tolist() == [0, 1, 0]   # 1, 4.5, 2
    with pytest.raises(ValueError, match="period"):
        labelled_examples(ds, "holdout")


def test_examples_max_rows_keeps_whole_users():
    ds = _dataset("synthetic")
    ds.split  # noqa: B018
    allrows = labelled_examples(ds, "train")
    sub = labelled_examples(ds, "train", max_rows=4, seed=3)
    assert len(sub) == 4                                                  # two whole users of two rows each
    for u, n in sub.groupby("user_id").size().items():
        assert n == (allrows["user_id"] == u).sum()
    assert sub.equals(labelled_examples(ds, "train", max_rows=4, seed=3))


# ------------------------------------------------------------------------------------------------- lgbm


def test_time_holdout_is_latest_fraction():
    df = pd.DataFrame({"event_timestamp": pd.to_datetime([5, 1, 3, 2, 4, 9, 8, 7, 6, 10], unit="D", utc=True)})
    mask = time_holdout(df, 0.2)
    assert sorted(df.loc[mask, "event_timestamp"].dt.day) == [10, 11]    # epoch day 9 and 10 -> the 2 latest
    same = pd.DataFrame({"event_timestamp": [pd.Timestamp("2024-01-01", tz="UTC")] * 10})
    assert time_holdout(same, 0.2).sum() == 2                             # one timestamp: fallback to row order


def test_ranker_is_deterministic_and_uses_categoricals(frames):
    train, test = frames
    feats = ["user_id", "item_id", "item_positive_rate", "cos_mean", "sid_0"]
    cats = ["user_id", "item_id", "sid_0"]
    a = LGBMRanker(FAST).fit(train, feats, cats)
    b = LGBMRanker(FAST).fit(train, feats, cats)
    assert a.booster.model_to_string() == b.booster.model_to_string()
    np.testing.assert_array_equal(a.predict(test), b.predict(test))
    c = LGBMRanker(FAST.model_copy(update={"seed": 5})).fit(train, feats, cats)
    assert not np.array_equal(a.predict(test), c.predict(test))           # seed drives bagging
    # categorical: the booster stores the training categories; an unseen sid value is treated as missing
    assert len(a.booster.pandas_categorical) == 3
    assert a.booster.pandas_categorical[2] == sorted(train["sid_0"].unique().tolist())
    unseen = test.head(5).assign(sid_0=99)
    assert np.isfinite(a.predict(unseen)).all()
    imp = a.feature_importance()
    assert set(imp["feature"]) == set(feats) and imp["gain"].is_monotonic_decreasing
    assert imp.iloc[0]["feature"] in ("cos_mean", "item_positive_rate")


def test_early_stopping_sees_only_the_training_frame(frames, monkeypatch):
    train, test = frames
    seen = []
    real_train = lgbm_mod.lgb.train

    def spy(params, train_set, *args, valid_sets=None, **kw):
        seen.append((train_set.data.index, [v.data.index for v in (valid_sets or [])]))
        return real_train(params, train_set, *args, valid_sets=valid_sets, **kw)

    monkeypatch.setattr(lgbm_mod.lgb, "train", spy)
    res = run_experiment(train, test, {"baseline": VariantSpec(("item_positive_rate", "cos_mean"))}, config=FAST,
                         n_bootstrap=5)
    (fit_idx, [hold_idx]), = seen
    assert hold_idx.isin(train.index).all() and fit_idx.isin(train.index).all()
    assert not hold_idx.isin(test.index).any() and not fit_idx.isin(test.index).any()
    assert len(fit_idx) + len(hold_idx) == len(train) and not fit_idx.isin(hold_idx).any()
    assert train.loc[hold_idx, "event_timestamp"].min() >= train.loc[fit_idx, "event_timestamp"].max()
    assert len(hold_idx) == pytest.approx(0.2 * len(train), abs=5)
    ranker = res.models["baseline"]
    assert ranker.holdout_index_.equals(hold_idx)
    best = ranker.fit_info["best_iteration"]
    assert best >= 1 and best < FAST.num_boost_round


def test_experiment_refuses_overlapping_periods(frames):
    train, test = frames
    with pytest.raises(ValueError, match="train_frame must end before test_frame"):
        run_experiment(test, train, {"baseline": VariantSpec(("item_positive_rate",))}, config=FAST, n_bootstrap=5)


def test_default_variants_compose():
    cols = ["user_id", "item_id", "event_timestamp", "label", "item_positive_rate", "hist_len", "cos_mean",
            "cos_last", "sid_0", "sid_1", "sid_recent_match_l0", "other"]
    v = default_variants(cols)
    assert v["baseline"] == VariantSpec(("user_id", "item_id", "item_positive_rate", "hist_len"), ("user_id", "item_id"))
    assert v["match"].features == (*v["baseline"].features, "cos_mean", "cos_last")
    assert v["match_sid"].features == (*v["match"].features, "sid_0", "sid_1", "sid_recent_match_l0")
    assert v["match_sid"].categorical == ("user_id", "item_id", "sid_0", "sid_1")
    with pytest.raises(ValueError, match="not in features"):
        VariantSpec(("a",), ("b",))


# ------------------------------------------------------------------------------------------- experiment


def test_match_variant_beats_baseline(experiment):
    res, *_ = experiment
    t = res.table.set_index("variant")
    assert list(t.index) == ["baseline", "match", "match_sid"]
    assert t.loc["match", "auc"] > t.loc["baseline", "auc"]
    assert t.loc["match", "auc_diff_vs_baseline_lo"] > 0                 # paired CI above zero
    assert t.loc["match", "gauc_diff_vs_baseline_lo"] > 0
    assert t.loc["match", "logloss_diff_vs_baseline_hi"] < 0
    for v in t.index:
        assert t.loc[v, "auc_lo"] <= t.loc[v, "auc"] <= t.loc[v, "auc_hi"]
        assert 0 < t.loc[v, "gauc_user_coverage"] <= 1
    assert np.isnan(t.loc["baseline", "auc_diff_vs_baseline"])
    assert t.loc["match", "ndcg_fake"] == 0.5
    assert list(res.predictions.columns) == ["user_id", "item_id", "event_timestamp", "label",
                                             "baseline", "match", "match_sid"]


def test_paired_comparisons_and_segments(frames):
    """comparisons give paired differences against a named reference; segments give AUC on a slice of rows."""
    train, test = frames
    variants = {k: v for k, v in default_variants(train.columns).items() if k in ("baseline", "match")}
    cold = (test["item_id"].to_numpy() % 3) == 0
    res = run_experiment(train, test, variants, config=FAST, n_bootstrap=30, seed=0,
                         comparisons={"match": "baseline"}, segments={"cold": cold})
    t = res.table.set_index("variant")
    assert t.loc["match", "ref_variant"] == "baseline" and t.loc["baseline", "ref_variant"] is None
    assert np.isclose(t.loc["match", "auc_diff_vs_ref"], t.loc["match", "auc_diff_vs_baseline"])
    assert t.loc["match", "auc_diff_vs_ref_lo"] <= t.loc["match", "auc_diff_vs_ref"] <= t.loc["match",
                                                                                               "auc_diff_vs_ref_hi"]
    assert np.isnan(t.loc["baseline", "auc_diff_vs_ref"])
    from sklearn.metrics import roc_auc_score
    y = test["label"].to_numpy()
    for v in variants:
        assert np.isclose(t.loc[v, "auc_cold"], roc_auc_score(y[cold], res.predictions[v].to_numpy()[cold]))
        assert t.loc[v, "n_cold"] == cold.sum()
    with pytest.raises(ValueError, match="not run"):
        run_experiment(train, test, variants, config=FAST, n_bootstrap=5, comparisons={"match": "nope"})
    with pytest.raises(ValueError, match="segment 'cold'"):
        run_experiment(train, test, variants, config=FAST, n_bootstrap=5, segments={"cold": cold[:-1]})


def test_mlflow_runs_metrics_artifacts_and_model_reload(experiment, frames):
    from mlflow.tracking import MlflowClient

    res, uri, run_dir, variants = experiment
    train, test = frames
    assert (run_dir / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("synthetic-test")
    assert exp.artifact_location.startswith((run_dir / "mlartifacts").resolve().as_uri())
    parent = client.get_run(res.parent_run_id)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"comparison.csv", "roc.png"}
    for name, run_id in res.run_ids.items():
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == res.parent_run_id
        assert run.data.tags["variant"] == name and run.data.tags["dataset"] == "generated"
        m = run.data.metrics
        for k in ("auc", "auc_lo", "auc_hi", "gauc", "gauc_lo", "gauc_hi", "logloss", "logloss_lo", "logloss_hi",
                  "gauc_user_coverage"):
            assert m[k] == pytest.approx(res.table.set_index("variant").loc[name, k])
        if name != "baseline":
            assert {"auc_diff_vs_baseline", "auc_diff_vs_baseline_lo", "auc_diff_vs_baseline_hi"} <= set(m)
        assert json.loads(run.data.params["features"]) == list(variants[name].features)
        assert "lgbm.learning_rate" in run.data.params and "fit.best_iteration" in run.data.params
        arts = {a.path for a in client.list_artifacts(run_id)}
        assert {"feature_importance.csv", "feature_importance.json", "feature_importance.png", "deciles.csv",
                "deciles.png", "roc.png", "ranker.json"} <= arts
        png = client.download_artifacts(run_id, "deciles.png", str(run_dir / f"dl-{name}"))
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # the logged LightGBM model reloads and predicts the same
    for name in ("baseline", "match_sid"):
        assert client.get_run(res.run_ids[name]).data.tags["model_uri"] == res.model_uris[name]
        reloaded = load_logged_ranker(res.model_uris[name], uri)
        np.testing.assert_allclose(reloaded.predict(test), res.predictions[name].to_numpy(), rtol=0, atol=1e-12)


def test_log_lifetime_adds_metrics_to_the_same_runs(experiment):
    from mlflow.tracking import MlflowClient

    res, uri, *_ = experiment
    lt = pd.DataFrame({"policy": ["baseline", "match", "random"], "LT7": [3.10, 3.25, 2.0],
                       "LT7_lo": [3.0, 3.1, 1.9], "LT7_hi": [3.2, 3.4, 2.1], "lt14": [5.0, 5.3, 3.0]})
    logged = log_lifetime(uri, "synthetic-test", res.run_ids, lt)
    assert set(logged) == {"baseline", "match"}
    client = MlflowClient(tracking_uri=uri)
    m = client.get_run(res.run_ids["match"]).data.metrics
    assert m["lt7"] == pytest.approx(3.25) and m["lt7_lo"] == pytest.approx(3.1) and m["lt14"] == pytest.approx(5.3)
    assert "auc" in m                                                     # same run as the experiment
    assert "lt7" not in client.get_run(res.run_ids["match_sid"]).data.metrics
    long = pd.DataFrame({"policy": ["match_sid"], "metric": ["LT7"], "value": [3.3], "lo": [3.2], "hi": [3.4]})
    log_lifetime(uri, "synthetic-test", {"match_sid": res.run_ids["match_sid"]}, long)
    m = client.get_run(res.run_ids["match_sid"]).data.metrics
    assert (m["lt7"], m["lt7_lo"], m["lt7_hi"]) == pytest.approx((3.3, 3.2, 3.4))


# ----------------------------------------------------------------------------------------------- policy


def test_ranker_policy_scores_candidates(experiment, frames):
    res, *_ = experiment
    train, _ = frames
    ranker = res.models["match"]
    feats = list(ranker.features)
    lookup = train.groupby(["user_id", "item_id"])[[f for f in feats if f not in ("user_id", "item_id")]].mean()
    calls = []

    def feature_fn(day, user_ids, candidates, history):
        calls.append((day, len(history)))
        keys = pd.MultiIndex.from_arrays([np.repeat(user_ids, candidates.shape[1]), candidates.ravel()])
        rows = lookup.reindex(keys).fillna(0.0)
        return rows.reset_index(names=["user_id", "item_id"])

    policy = RankerPolicy(ranker, feature_fn)
    users = np.array([3, 7, 11])
    cands = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    history = train.head(10)
    scores = policy.score(4, users, cands, history)
    assert scores.shape == (3, 4) and calls == [(4, 10)]
    expected = ranker.predict(feature_fn(4, users, cands, history)).reshape(3, 4)
    np.testing.assert_array_equal(scores, expected)
    assert scores[1, 2] == pytest.approx(ranker.predict(feature_fn(0, users[1:2], cands[1:2, 2:3], history))[0])

    def shuffled(day, user_ids, candidates, history):
        return feature_fn(day, user_ids, candidates, history).iloc[::-1]

    with pytest.raises(ValueError, match="row-major"):
        RankerPolicy(ranker, shuffled).score(0, users, cands, history)


def test_prepare_frame_names_missing_columns(frames):
    train, _ = frames
    with pytest.raises(KeyError, match="cos_nope"):
        prepare_frame(train, ["item_positive_rate", "cos_nope"])
