"""Match features (pure numpy): each equals its definition recomputed by hand, for any number of SID levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import match_features as mf
from features.schema import sid_columns


def _frames(fw):
    rng = np.random.default_rng(3)
    k, p = 2, 8
    cands = fw.unit(rng.normal(size=(4, fw.D))).astype(np.float32)
    user = pd.DataFrame({
        "mean_emb": list(fw.unit(rng.normal(size=(4, fw.D))).astype(np.float32)),
        "recency_emb": list(fw.unit(rng.normal(size=(4, fw.D))).astype(np.float32)),
        "last_emb": list(fw.unit(rng.normal(size=(4, fw.D))).astype(np.float32)),
        "centroids": list(fw.unit(rng.normal(size=(4, k, fw.D))).astype(np.float32).reshape(4, -1)),
        "centroid_weights": [np.array([0.7, 0.3], np.float32)] * 3 + [np.array([1.0, 0.0], np.float32)],
        "recent_items": [np.array([5, 6, -1])] * 4,
        "recent_prefix": list(np.concatenate([fw.unit(cands[:, :p])[:, None, :],  # item 5 == candidate's prefix
                                              fw.unit(-cands[:, :p])[:, None, :],
                                              np.zeros((4, 1, p))], axis=1).astype(np.float32).reshape(4, -1)),
        "recent_sids": [np.array([1, 2, 3, 1, 2, 4, -1, -1, -1])] * 4,
        "centroid_sids": [np.array([1, 5, 5, -1, -1, -1])] * 4,
    })
    item = pd.DataFrame({"embedding": list(cands), "sid_0": [1, 1, 2, 1], "sid_1": [2, 2, 2, 5],
                         "sid_2": [3, 4, 3, 0]})
    return user, item, k


def test_match_features_equal_direct_numpy(fw):
    user, item, k = _frames(fw)
    c = fw.unit(np.stack(item["embedding"]))
    for name, col in (("cos_mean", "mean_emb"), ("cos_recency", "recency_emb"), ("cos_last", "last_emb")):
        expect = (fw.unit(np.stack(user[col])) * c).sum(axis=1)
        np.testing.assert_allclose(mf.EMBEDDING_MATCH_FEATURES[name](user, item), expect, rtol=1e-12)
    cents = fw.unit(np.stack(user["centroids"]).reshape(4, k, fw.D))
    cos = np.einsum("rkd,rd->rk", cents, c)
    w = np.stack(user["centroid_weights"]).astype(np.float64)
    expect_max = np.array([cos[r, :2].max() for r in range(3)] + [cos[3, 0]])
    np.testing.assert_allclose(mf.cos_centroid_max(user, item), expect_max, rtol=1e-12)
    np.testing.assert_allclose(mf.cos_centroid_wavg(user, item), (cos * w).sum(1) / w.sum(1), rtol=1e-12)
    # recent item 5 has the candidate's own prefix (cos 1), item 6 its negation (cos -1), third slot is padding
    np.testing.assert_array_equal(mf.hist_sim_count(user, item), np.ones(4))
    frame = mf.compute_match_frame(user.join(item), user.join(item), mf.match_feature_registry(3))
    assert list(frame.columns) == list(mf.match_feature_registry(3))
    for name, fn in mf.match_feature_registry(3).items():  # the memo inside compute_match_frame changes nothing
        np.testing.assert_array_equal(frame[name], fn(user, item))


def test_sid_match_is_hierarchical_prefix_equality(fw):
    user, item, _ = _frames(fw)
    m = mf.compute_match_frame(user, item, mf.sid_match_features(3))
    # recent sids: (1,2,3), (1,2,4); candidates: (1,2,3) (1,2,4) (2,2,3) (1,5,0)
    np.testing.assert_array_equal(m["sid_recent_match_l0"], [1, 1, 0, 1])
    np.testing.assert_array_equal(m["sid_recent_match_l1"], [1, 1, 0, 0])
    np.testing.assert_array_equal(m["sid_recent_match_l2"], [1, 1, 0, 0])  # (2,2,3): l2 equal but l0 differs
    # top medoid sids (1,5,5)
    np.testing.assert_array_equal(m["sid_top_centroid_match_l0"], [1, 1, 0, 1])
    np.testing.assert_array_equal(m["sid_top_centroid_match_l1"], [0, 0, 0, 1])
    np.testing.assert_array_equal(m["sid_top_centroid_match_l2"], [0, 0, 0, 0])


def _brute_sid_match(recent: list[tuple], top: tuple, cand: tuple, level: int) -> tuple[float, float]:
    """(recent match, top-medoid match) of one candidate at one level, straight from the definition."""
    pre = cand[: level + 1]
    return float(any(r[: level + 1] == pre for r in recent)), float(top[: level + 1] == pre)


@pytest.mark.parametrize("levels", [2, 4])
def test_sid_match_features_follow_the_number_of_levels(levels):
    rng = np.random.default_rng(levels)
    rows, n, k = 60, 3, 2
    recent = rng.integers(0, 2, (rows, n, levels))
    recent[:, -1] = -1  # the last recent slot is padding
    cents = rng.integers(0, 2, (rows, k, levels))
    cand = rng.integers(0, 2, (rows, levels))
    user = pd.DataFrame({"recent_items": [np.array([7, 8, -1])] * rows,
                         "recent_sids": list(recent.reshape(rows, -1)),
                         "centroid_sids": list(cents.reshape(rows, -1))})
    item = pd.DataFrame(cand, columns=sid_columns(levels))
    m = mf.compute_match_frame(user, item, mf.sid_match_features(levels))
    assert list(m.columns) == ([f"sid_recent_match_l{lvl}" for lvl in range(levels)]
                               + [f"sid_top_centroid_match_l{lvl}" for lvl in range(levels)])
    for r in range(rows):
        real = [tuple(x) for x in recent[r] if (x >= 0).all()]
        for lvl in range(levels):
            expect = _brute_sid_match(real, tuple(cents[r, 0]), tuple(cand[r]), lvl)
            assert (m.loc[r, f"sid_recent_match_l{lvl}"], m.loc[r, f"sid_top_centroid_match_l{lvl}"]) == expect
    assert 0 < m["sid_recent_match_l0"].mean() < 1 and m[f"sid_recent_match_l{levels - 1}"].sum() > 0


def test_match_features_missing_inputs_give_documented_defaults(fw):
    user, item, _ = _frames(fw)
    user.loc[1, :] = None  # unknown user
    item.loc[2, :] = None  # unknown item
    m = mf.compute_match_frame(user, item, mf.match_feature_registry(3))
    for name in mf.EMBEDDING_MATCH_FEATURES:
        if name == "hist_sim_count":
            assert m.loc[1, name] == 0 and m.loc[2, name] == 0
        else:
            assert np.isnan(m.loc[1, name]) and np.isnan(m.loc[2, name]) and not np.isnan(m.loc[0, name])
    for name in mf.sid_match_features(3):
        assert m.loc[1, name] == 0 and m.loc[2, name] == 0


def test_no_history_anywhere_gives_zero_counts(fw):
    user, item, _ = _frames(fw)
    user[:] = None  # every user unknown: the list columns have no width at all
    np.testing.assert_array_equal(mf.hist_sim_count(user, item), np.zeros(len(item)))
