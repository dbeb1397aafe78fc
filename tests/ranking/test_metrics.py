"""ranking.metrics against hand computations, and the behaviour of the user-level bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ranking.metrics import (
    auc,
    bootstrap_ci,
    bootstrap_interval,
    gauc,
    gauc_report,
    logloss,
    mean_ci,
    paired_bootstrap_diff,
    per_group_auc,
)


def clustered(n_users: int, per_user: int, seed: int, signal: float = 1.0):
    """Scores with a per-user offset shared by label and score, so rows of a user are correlated."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_users), per_user)
    u = rng.normal(0, 1.5, n_users)[g]
    x = rng.normal(size=len(g))
    y = (rng.random(len(g)) < 1 / (1 + np.exp(-(signal * x + u)))).astype(int)
    p = 1 / (1 + np.exp(-(signal * x + u + rng.normal(0, 1, len(g)))))
    return y, p, g


# ------------------------------------------------------------------------------------- point metrics


def test_auc_by_hand():
    # positives .35, .8 vs negatives .1, .4: pairs won 1 + 2 = 3 of 4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)          # a tie counts one half
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))              # one class: undefined


def test_logloss_by_hand():
    assert logloss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert logloss([1], [0.0]) == pytest.approx(-math.log(1e-7))    # clipped, finite


def test_gauc_weights_by_impressions_and_skips_one_class_users():
    # user 1: pos .9 vs negs .5, .95 -> 1/2, n=3; user 2: pos .8, .6 vs negs .7, .1 -> 3/4, n=4; user 3: no positive
    y = [1, 0, 0, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.5, 0.95, 0.8, 0.6, 0.7, 0.1, 0.3, 0.2]
    g = [1, 1, 1, 2, 2, 2, 2, 3, 3]
    expected = (3 * 0.5 + 4 * 0.75) / 7
    assert gauc(y, p, g) == pytest.approx(expected)
    assert gauc(y, p, g) != pytest.approx((0.5 + 0.75) / 2)           # not the unweighted mean
    rep = gauc_report(y, p, g)
    assert rep["gauc"] == pytest.approx(expected)
    assert rep["gauc_users"] == 2
    assert rep["gauc_user_coverage"] == pytest.approx(2 / 3)
    assert rep["gauc_impression_coverage"] == pytest.approx(7 / 9)


def test_per_group_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 30, 600)
    y = rng.integers(0, 2, 600)
    p = rng.integers(0, 5, 600) / 4.0                                    # many ties
    table = per_group_auc(y, p, g).set_index("group")
    for u in np.unique(g):
        m = g == u
        ref = roc_auc_score(y[m], p[m]) if len(set(y[m])) == 2 else np.nan
        assert table.loc[u, "auc"] == pytest.approx(ref, nan_ok=True)
        assert table.loc[u, "n"] == m.sum()


def test_integer_weights_equal_duplicated_rows():
    y, p, g = clustered(40, 10, seed=1)
    w = np.random.default_rng(2).integers(0, 4, 40)[g]                  # constant within a user
    idx = np.repeat(np.arange(len(y)), w)
    assert auc(y, p, sample_weight=w) == pytest.approx(auc(y[idx], p[idx]))
    assert logloss(y, p, sample_weight=w) == pytest.approx(logloss(y[idx], p[idx]))
    assert gauc(y, p, g, sample_weight=w) == pytest.approx(gauc(y[idx], p[idx], g[idx]))
    with pytest.raises(ValueError, match="constant within each group"):
        gauc(y, p, g, sample_weight=np.arange(len(y)))


# ------------------------------------------------------------------------------------------ bootstrap


@pytest.mark.parametrize("metric", [auc, gauc, logloss])
def test_bootstrap_contains_point_and_narrows_with_more_data(metric):
    y_s, p_s, g_s = clustered(30, 10, seed=3)
    y_l, p_l, g_l = clustered(600, 10, seed=3)
    point, lo, hi = bootstrap_ci(metric, y_s, p_s, g_s, n=200, seed=0)
    assert point == pytest.approx(metric(y_s, p_s, g_s))
    assert lo <= point <= hi and lo < hi
    point_l, lo_l, hi_l = bootstrap_ci(metric, y_l, p_l, g_l, n=200, seed=0)
    assert lo_l <= point_l <= hi_l
    assert (hi_l - lo_l) < 0.5 * (hi - lo)                                # 20x the users: ~4.5x narrower


def test_bootstrap_resamples_users_not_rows():
    # strong per-user effect: rows of a user are correlated, so the cluster interval must be wider
    y, p, g = clustered(40, 50, seed=4, signal=0.3)
    _, lo_c, hi_c = bootstrap_ci(auc, y, p, g, n=300, seed=0)
    _, lo_r, hi_r = bootstrap_ci(auc, y, p, None, n=300, seed=0)
    assert (hi_c - lo_c) > 1.3 * (hi_r - lo_r)


def test_bootstrap_is_seeded():
    y, p, g = clustered(50, 8, seed=5)
    assert bootstrap_ci(gauc, y, p, g, n=50, seed=7) == bootstrap_ci(gauc, y, p, g, n=50, seed=7)
    assert bootstrap_ci(auc, y, p, g, n=50, seed=7) != bootstrap_ci(auc, y, p, g, n=50, seed=8)


def test_generic_callables_match_fast_paths():
    """Plain callables (no sample_weight) are materialised; repeated users must stay distinct groups."""
    y, p, g = clustered(25, 8, seed=6)
    assert bootstrap_ci(lambda a, b: roc_auc_score(a, b), y, p, g, n=40, seed=1) == \
        pytest.approx(bootstrap_ci(auc, y, p, g, n=40, seed=1))
    assert bootstrap_ci(lambda a, b, groups: gauc(a, b, groups), y, p, g, n=40, seed=1) == \
        pytest.approx(bootstrap_ci(gauc, y, p, g, n=40, seed=1))


def test_paired_difference():
    y, p, g = clustered(200, 10, seed=8)
    same = paired_bootstrap_diff(auc, y, p, p, g, n=100, seed=0)
    assert same == (0.0, 0.0, 0.0)
    noise = np.random.default_rng(9).random(len(y))
    d, lo, hi = paired_bootstrap_diff(auc, y, p, noise, g, n=200, seed=0)
    assert d == pytest.approx(auc(y, p) - auc(y, noise))
    assert 0 < lo <= d <= hi
    d, lo, hi = paired_bootstrap_diff(logloss, y, p, noise, g, n=200, seed=0)
    assert hi < 0                                                         # better model: lower log loss
    # a small real improvement is resolved by pairing even when the marginal intervals overlap
    p_better = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + 0.6 * (y - 0.5))))
    d, lo, hi = paired_bootstrap_diff(auc, y, p_better, p, g, n=200, seed=0)
    _, lo_b, hi_b = bootstrap_ci(auc, y, p_better, g, n=200, seed=0)
    _, lo_a, hi_a = bootstrap_ci(auc, y, p, g, n=200, seed=0)
    assert lo > 0 and (hi - lo) < min(hi_a - lo_a, hi_b - lo_b)


def test_metric_intervals_are_the_shared_bootstrap():
    """bootstrap_ci is bootstrap_interval over user-count weights: one implementation, same resamples."""
    y, p, g = clustered(60, 8, seed=11)
    codes = np.unique(g, return_inverse=True)[1]
    by_hand = bootstrap_interval(lambda counts: auc(y, p, sample_weight=counts[codes]), 60, n=80, seed=4)
    assert bootstrap_ci(auc, y, p, g, n=80, seed=4)[1:] == pytest.approx(by_hand)


def test_mean_ci_of_per_user_values():
    rng = np.random.default_rng(12)
    v = rng.poisson(4, 300).astype(float)
    v[::7] = np.nan                                                       # not eligible
    mean, lo, hi = mean_ci(v, n=300, seed=0)
    assert mean == pytest.approx(np.nanmean(v)) and lo < mean < hi
    se = np.nanstd(v) / np.sqrt((~np.isnan(v)).sum())
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.25)            # the normal-theory width
    # a per-user difference with the same seed: the same resamples, so a constant shift moves the interval exactly
    shifted = mean_ci(v + 1.0, n=300, seed=0)
    assert shifted == pytest.approx((mean + 1, lo + 1, hi + 1))
    assert mean_ci(np.zeros(20), n=50) == (0.0, 0.0, 0.0)
    assert all(np.isnan(x) for x in mean_ci(np.full(5, np.nan)))
    with pytest.raises(ValueError, match=">= 1"):
        mean_ci(v, n=0)


def test_resampled_auc_fast_path_equals_sklearn_weighted_auc():
    """The bootstrap's AUC sorts the scores once; every resample must equal roc_auc_score on the weighted rows,
    ties (half credit) included."""
    from sklearn.metrics import roc_auc_score

    from ranking.metrics import _RankedScores

    rng = np.random.default_rng(3)
    y = (rng.random(800) < 0.3).astype(float)
    p = np.round(rng.normal(size=800), 1)  # many ties
    ranked = _RankedScores(y, p)
    for _ in range(20):
        w = rng.integers(0, 3, 800).astype(float)
        keep = w > 0
        assert ranked.auc(w) == pytest.approx(roc_auc_score(y[keep], p[keep], sample_weight=w[keep]), abs=1e-12)
    assert np.isnan(ranked.auc(np.where(y == 1, 1.0, 0.0)))  # one class left: undefined
