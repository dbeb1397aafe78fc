"""Feature coverage of a retrieved frame: the fractions a degenerate-output guard reads."""

from __future__ import annotations

import pandas as pd
import pytest

from features.coverage import coverage
from features.match_features import SIMILARITY_FEATURES


@pytest.fixture(scope="module")
def repo(fw, tmp_path_factory):
    return fw.build_repo(tmp_path_factory.mktemp("run"), *fw.make_world())


def test_coverage_counts_unknown_ids_and_missing_match_features(fw, repo):
    t = fw.START + pd.Timedelta(days=8)
    # user 1 known, user 6 known from day 7, user 777 unknown; items 100 known, 99999 unknown -> 8 rows
    rows = [(u, i, t) for u in (1, 6, 777) for i in (100, 99999)] + [(6, 100, fw.START + pd.Timedelta(days=2))] * 2
    frame = repo.historical(pd.DataFrame(rows, columns=["user_id", "item_id", "event_timestamp"]))
    got = coverage(frame)
    # unknown user: 777 twice + user 6 before day 7 twice = 4 of 8; unknown item: 99999 three times
    # match features need both: only (1, 100) and (6, 100) at t have them, the other 6 rows are featureless
    assert got == {"rows": 8, "unknown_user": 4 / 8, "unknown_item": 3 / 8, "no_match_features": 6 / 8,
                   "featureless": 6 / 8}
    assert frame.loc[~frame[list(SIMILARITY_FEATURES)].isna().all(axis=1), "item_id"].eq(100).all()
    suffixed = frame.rename(columns={c: c + "_content" for c in SIMILARITY_FEATURES})
    assert coverage(suffixed, suffix="_content") == got
    assert coverage(frame.iloc[:0]) == {"rows": 0, "unknown_user": 1.0, "unknown_item": 1.0,
                                        "no_match_features": 1.0, "featureless": 1.0}
