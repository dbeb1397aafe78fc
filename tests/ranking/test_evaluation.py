"""Variant evaluation (ranking/evaluation.py) on predictions whose quality is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ranking.evaluation import evaluate_variants
from ranking.metrics import auc, paired_bootstrap_diff


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 10)
    signal = rng.normal(size=len(users))
    y = (rng.random(len(users)) < 1 / (1 + np.exp(-2 * signal))).astype(float)
    preds = {"baseline": 1 / (1 + np.exp(-(signal + rng.normal(0, 2.0, len(y))))),
             "better": 1 / (1 + np.exp(-(signal + rng.normal(0, 0.5, len(y))))),
             "twin": 1 / (1 + np.exp(-(signal + rng.normal(0, 1.0, len(y)))))}
    return y, users, preds


def test_metrics_differences_comparisons_and_segments(scored):
    y, users, preds = scored
    cold = (np.arange(len(y)) % 3) == 0
    t = evaluate_variants(y, users, preds, "baseline", comparisons={"better": "twin"}, segments={"cold": cold},
                          n_bootstrap=50, seed=0).set_index("variant")
    assert list(t.index) == ["baseline", "better", "twin"]
    for v, p in preds.items():
        assert t.loc[v, "auc"] == pytest.approx(roc_auc_score(y, p))
        assert t.loc[v, "auc_lo"] <= t.loc[v, "auc"] <= t.loc[v, "auc_hi"]
        assert t.loc[v, "auc_cold"] == pytest.approx(roc_auc_score(y[cold], p[cold]))
        assert t.loc[v, "n_cold"] == cold.sum()
        assert 0 < t.loc[v, "gauc_user_coverage"] <= 1
    assert np.isnan(t.loc["baseline", "auc_diff_vs_baseline"])
    assert t.loc["better", "auc_diff_vs_baseline_lo"] > 0 and t.loc["better", "logloss_diff_vs_baseline_hi"] < 0
    expected = paired_bootstrap_diff(auc, y, preds["better"], preds["twin"], users, n=50, seed=0)
    assert (t.loc["better", "auc_diff_vs_ref"], t.loc["better", "auc_diff_vs_ref_lo"],
            t.loc["better", "auc_diff_vs_ref_hi"]) == pytest.approx(expected)
    assert t.loc["better", "ref_variant"] == "twin" and t.loc["twin", "ref_variant"] is None
    assert np.isnan(t.loc["twin", "gauc_diff_vs_ref"])


def test_one_class_segment_and_bad_arguments(scored):
    y, users, preds = scored
    only_negatives = y == 0
    t = evaluate_variants(y, users, preds, "baseline", segments={"neg": only_negatives}, n_bootstrap=5)
    assert t["auc_neg"].isna().all() and (t["n_neg"] == only_negatives.sum()).all()
    with pytest.raises(ValueError, match="not run"):
        evaluate_variants(y, users, preds, "baseline", comparisons={"better": "nope"}, n_bootstrap=5)
    with pytest.raises(ValueError, match="segment 'cold'"):
        evaluate_variants(y, users, preds, "baseline", segments={"cold": only_negatives[:-1]}, n_bootstrap=5)
    with pytest.raises(ValueError, match="baseline 'nope'"):
        evaluate_variants(y, users, preds, "nope", n_bootstrap=5)
