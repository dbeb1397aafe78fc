"""DLRM preprocessing (ranking/dlrm_preprocessing.py): id rows, the vocabulary cap, dense standardisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.dlrm_preprocessing import CONST_FEATURE, DLRMPreprocessor, id_keys, id_kind
from ranking.holdout import time_holdout
from recsys.errors import DataError


def ids_only(col: pd.Series, max_rows: int = 100) -> DLRMPreprocessor:
    return DLRMPreprocessor(["x"], [], max_rows=max_rows).fit(pd.DataFrame({"x": col}))


def rows(pre: DLRMPreprocessor, values) -> list[int]:
    return pre.transform(pd.DataFrame({"x": values}))[1][:, 0].tolist()


def test_unseen_and_missing_ids_map_to_row_zero():
    pre = ids_only(pd.Series([10, 20, 20, 30], dtype="int64"))
    assert pre.table_sizes == {"x": 4}
    seen = rows(pre, pd.Series([10, 20, 30]))
    assert seen == [2, 1, 3]                                              # most frequent first, ties by value
    assert rows(pre, pd.Series([99, -1, None], dtype="float64")) == [0, 0, 0]
    assert rows(pre, pd.Series(["a", "20", None], dtype=object)) == [0, seen[1], 0]  # strings read as ints
    # string ids: a string-keyed table
    s = ids_only(pd.Series(["a", "b", "b", None]))
    assert s.kinds == {"x": "str"} and s.table_sizes == {"x": 3}
    got = rows(s, pd.Series(["b", "a", "zz", None]))
    assert sorted(got[:2]) == [1, 2] and got[2:] == [0, 0]


def test_id_kinds_and_keys():
    assert id_kind(pd.Series([1.0, 2.0, np.nan])) == "int"
    assert id_kind(pd.Series([1.5, 2.0])) == "str"
    assert id_kind(pd.Series(["a"])) == "str" and id_kind(pd.Series([True, False])) == "int"
    big = pd.Series([2**62 + 1, 2**62 + 2], dtype="int64")
    assert id_keys(big, "int").tolist() == [2**62 + 1, 2**62 + 2]            # exact beyond float precision
    keys = id_keys(pd.Series([1.0, np.nan, 2.5]), "int")
    assert keys[0] == 1 and np.isnan(keys[1]) and np.isnan(keys[2])


def test_vocabulary_cap_shares_one_row_among_rare_ids():
    col = pd.Series(np.r_[np.repeat([1, 2, 3], 50), np.arange(100, 400)])     # 3 frequent, 300 rare
    pre = ids_only(col, max_rows=64)
    assert pre.table_sizes == {"x": 64}
    got = np.array(rows(pre, col))
    assert got.min() >= 1 and got.max() < 64
    frequent = set(rows(pre, [1, 2, 3]))
    assert len(frequent) == 3
    rare = got[col.to_numpy() >= 100]
    shared, counts = np.unique(rare, return_counts=True)
    assert counts.max() == 300 - (62 - 3) and shared[counts.argmax()] not in frequent  # one infrequent row
    assert len(np.unique(got)) == 63                                        # 62 kept values + infrequent
    assert rows(pre, [10_000]) == [0]                                       # never seen: still unknown
    shuffled = ids_only(col.sample(frac=1.0, random_state=1), max_rows=64)   # row order does not matter
    np.testing.assert_array_equal(rows(shuffled, col), got)


def test_dense_preprocessing_by_hand(make_dlrm_frame):
    df, features, _ = make_dlrm_frame(n=3000)
    hold = time_holdout(df, 0.2)
    fit_part = df.loc[~hold]
    pre = DLRMPreprocessor([], ["cnt", "f0", "f2"], clip_z=3.0).fit(fit_part)
    dense, ids = pre.transform(df)
    assert ids.shape == (len(df), 1) and (ids == 0).all() and pre.sparse_keys == [CONST_FEATURE]
    assert dense.dtype == np.float32 and np.isfinite(dense).all()
    names = pre.dense_names
    assert names == ["cnt", "f0", "f2", "missingindicator_f2"]
    # counts get log1p, gaussians do not; standardised with the fit part's mean / std, clipped to +-3
    for col, transform in (("cnt", np.log1p), ("f0", lambda v: v)):
        v = transform(fit_part[col].to_numpy(np.float64))
        expected = np.clip((transform(df[col].to_numpy(np.float64)) - v.mean()) / v.std(), -3, 3)
        np.testing.assert_allclose(dense[:, names.index(col)], expected, rtol=1e-5, atol=1e-5)
    f2 = df["f2"].to_numpy()
    np.testing.assert_array_equal(dense[:, names.index("missingindicator_f2")], np.isnan(f2).astype(np.float32))
    assert (dense[np.isnan(f2), names.index("f2")] == 0).all()              # missing -> the training mean


def test_non_numeric_dense_feature_is_named():
    frame = pd.DataFrame({"d": ["a", "b"]})
    with pytest.raises(DataError, match="'d'.*not numeric"):
        DLRMPreprocessor([], ["d"]).fit(frame)


def test_save_load_round_trip(tmp_path, make_dlrm_frame):
    df, features, _ = make_dlrm_frame(n=2000)
    cats = ["user_id", "sid_1"]
    pre = DLRMPreprocessor(cats, ["cnt", "f2"], max_rows=50).fit(df.iloc[:1500])
    pre.save(tmp_path / "pre.skops")
    back = DLRMPreprocessor.load(tmp_path / "pre.skops")
    for a, b in zip(pre.transform(df), back.transform(df)):
        np.testing.assert_array_equal(a, b)
    assert back.table_sizes == pre.table_sizes and back.dense_names == pre.dense_names
