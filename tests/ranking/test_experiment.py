"""The ranking experiment (ranking/experiment.py): rankers fit on the training frame only, the match feature
wins, the table carries what each variant is."""

from __future__ import annotations

import numpy as np
import pytest

from ranking import lgbm as lgbm_mod
from ranking.dlrm import DLRMConfig
from ranking.experiment import run_experiment
from ranking.variants import VariantSpec
from recsys.errors import DataError


def test_match_variant_beats_baseline(experiment):
    res = experiment.result
    t = res.table.set_index("variant")
    assert list(t.index) == ["baseline", "match", "match_sid"]
    assert t.loc["match", "auc"] > t.loc["baseline", "auc"]
    assert t.loc["match", "auc_diff_vs_baseline_lo"] > 0                 # paired CI above zero
    assert t.loc["match", "gauc_diff_vs_baseline_lo"] > 0
    assert t.loc["match", "logloss_diff_vs_baseline_hi"] < 0
    assert t.loc["match", "ndcg_fake"] == 0.5 and np.isnan(t.loc["baseline", "ndcg_fake"])
    for v, spec in experiment.variants.items():
        assert t.loc[v, "n_features"] == len(spec.features) and t.loc[v, "n_test"] == len(res.predictions)
        assert t.loc[v, "best_iteration"] == res.models[v].fit_info["best_iteration"]
        assert t.loc[v, "run_id"] == res.run_ids[v]
    assert list(res.predictions.columns) == ["user_id", "item_id", "event_timestamp", "label",
                                             "baseline", "match", "match_sid"]


def test_rankers_see_only_the_training_frame(frames, fast_lgbm, monkeypatch):
    train, test = frames
    seen = []
    real_train = lgbm_mod.lgb.train

    def spy(params, train_set, *args, valid_sets=None, **kw):
        seen.append((train_set.data.index, [v.data.index for v in (valid_sets or [])]))
        return real_train(params, train_set, *args, valid_sets=valid_sets, **kw)

    monkeypatch.setattr(lgbm_mod.lgb, "train", spy)
    res = run_experiment(train, test, {"baseline": VariantSpec(("item_positive_rate", "cos_mean"))},
                         ranker_configs={"lgbm": fast_lgbm}, n_bootstrap=5)
    (fit_idx, [hold_idx]), = seen
    assert hold_idx.isin(train.index).all() and fit_idx.isin(train.index).all()
    assert not hold_idx.isin(test.index).any() and not fit_idx.isin(test.index).any()
    assert len(fit_idx) + len(hold_idx) == len(train) and not fit_idx.isin(hold_idx).any()
    assert train.loc[hold_idx, "event_timestamp"].min() >= train.loc[fit_idx, "event_timestamp"].max()
    assert len(hold_idx) == pytest.approx(0.2 * len(train), abs=5)
    assert res.models["baseline"].fit_info["n_holdout"] == len(hold_idx)


def test_each_variant_gets_its_kind_of_ranker(frames, fast_lgbm):
    train, test = frames
    variants = {"baseline": VariantSpec(("user_id", "cos_mean"), ("user_id",)),
                "dlrm_baseline": VariantSpec(("user_id", "cos_mean"), ("user_id",), ranker="dlrm")}
    dlrm = DLRMConfig(epochs=2, permutation_importance=False)
    res = run_experiment(train, test, variants, ranker_configs={"lgbm": fast_lgbm, "dlrm": dlrm}, n_bootstrap=5)
    assert {v: m.kind for v, m in res.models.items()} == {"baseline": "lgbm", "dlrm_baseline": "dlrm"}
    assert res.models["dlrm_baseline"].config == dlrm and res.models["baseline"].config == fast_lgbm
    t = res.table.set_index("variant")
    assert t.loc["dlrm_baseline", "best_iteration"] == res.models["dlrm_baseline"].fit_info["best_epoch"]
    assert t.loc["dlrm_baseline", "auc"] > 0.6


def test_experiment_refuses_overlapping_periods_and_bad_frames(frames, fast_lgbm):
    train, test = frames
    one = {"baseline": VariantSpec(("item_positive_rate",))}
    with pytest.raises(ValueError, match="train_frame must end before test_frame"):
        run_experiment(test, train, one, ranker_configs={"lgbm": fast_lgbm}, n_bootstrap=5)
    with pytest.raises(KeyError, match="cos_nope"):
        run_experiment(train, test, {"x": VariantSpec(("cos_nope",))}, n_bootstrap=5)
    with pytest.raises(ValueError, match="clash"):
        run_experiment(train, test, {"label": VariantSpec(("item_positive_rate",))}, n_bootstrap=5)


def test_a_single_class_or_empty_frame_is_refused_before_any_fit(frames, fast_lgbm, monkeypatch):
    train, test = frames
    one = {"baseline": VariantSpec(("item_positive_rate",))}
    fits = []
    monkeypatch.setattr(lgbm_mod.LGBMRanker, "fit", lambda self, *a, **k: fits.append(1))
    with pytest.raises(DataError, match=f"train_frame has {len(train)} rows of one class \\({len(train)} positive"):
        run_experiment(train.assign(label=1), test, one, n_bootstrap=5)
    with pytest.raises(DataError, match="test_frame has 3000 rows of one class \\(0 positive"):
        run_experiment(train, test.assign(label=0), one, n_bootstrap=5)
    with pytest.raises(DataError, match="test_frame is empty"):
        run_experiment(train, test.head(0), one, n_bootstrap=5)
    assert fits == []


def test_strongest_baseline_is_chosen_on_validation_never_on_test(frames, fast_lgbm):
    """Two baselines: `shifts` reads a column that predicts the label in the training frame only, `steady` one that
    predicts it everywhere, more weakly. On the test frame `steady` is better, on validation `shifts` is: the
    choice must follow validation, and every lift is measured against the chosen one."""
    train, test = (f.copy() for f in frames)
    rng = np.random.default_rng(0)
    train["shifts"] = train["label"] + rng.normal(0, 0.5, len(train))
    test["shifts"] = rng.normal(0, 1, len(test))                          # worthless on test
    for f in (train, test):
        f["steady"] = f["cos_mean"]
    variants = {"shifts": VariantSpec(("shifts",)), "steady": VariantSpec(("steady",)),
                "match": VariantSpec(("steady", "item_positive_rate", "user_positive_rate"))}
    res = run_experiment(train, test, variants, baseline="steady", baselines=["shifts", "steady"],
                         ranker_baselines={"match": "steady"},
                         attribution=[("statistics", "match", "steady")], ranker_configs={"lgbm": fast_lgbm},
                         n_bootstrap=20, importance_repeats=2)
    t = res.table.set_index("variant")
    assert t.loc["shifts", "validation_auc"] > t.loc["steady", "validation_auc"]
    assert t.loc["steady", "auc"] > t.loc["shifts", "auc"]              # test would have picked the other one
    assert res.baseline == "shifts" and t["strongest_baseline"].tolist() == [True, False, False]
    assert t.loc["match", "auc_diff_vs_baseline"] == pytest.approx(t.loc["match", "auc"] - t.loc["shifts", "auc"])
    assert t.loc["match", "auc_diff_vs_ranker"] == pytest.approx(t.loc["match", "auc"] - t.loc["steady", "auc"])
    row = res.attribution.iloc[0]
    assert (row["group"], row["variant"], row["without"]) == ("statistics", "match", "steady")
    assert row["auc_diff_vs_without"] == pytest.approx(t.loc["match", "auc_diff_vs_ranker"])
    # importance: only the features match adds to its baseline, each a mean AUC drop on the test frame
    assert sorted(res.importance["feature"]) == ["item_positive_rate", "user_positive_rate"]
    assert (res.importance["variant"] == "match").all()
    with pytest.raises(ValueError, match="not run"):
        run_experiment(train, test, variants, baselines=["nope"], ranker_configs={"lgbm": fast_lgbm})


def test_strongest_baseline_needs_a_validation_auc():
    from ranking.experiment import strongest_baseline

    assert strongest_baseline({"a": 0.6, "b": 0.7}, ["a", "b"]) == "b"
    assert strongest_baseline({"a": 0.7, "b": 0.7}, ["a", "b"]) == "a"  # ties: the first listed
    with pytest.raises(ValueError, match=r"baselines \['b'\] have no validation"):
        strongest_baseline({"a": 0.6, "b": float("nan")}, ["a", "b"])
