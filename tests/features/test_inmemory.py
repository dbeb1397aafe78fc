"""The "cannot drift" promise: the lifetime simulation's in-memory features equal the Feast historical retrieval of
the same examples at the same point in time, every column, exactly (same dtypes, same bits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definitions import FULL_SERVICE
from features.inmemory import InMemoryFeatures
from features.serving import service_layout
from recsys.data.schema import PositiveRule
from recsys.errors import ConfigError


@pytest.mark.parametrize("levels", [3, 4])
def test_inmemory_frame_equals_feast_historical(fw, tmp_path, levels):
    items, ev = fw.make_world(seed=11, sid_levels=levels)
    repo = fw.build_repo(tmp_path, items, ev, sid_levels=levels)
    layout = service_layout(repo.store, FULL_SERVICE)
    mem = InMemoryFeatures(items, PositiveRule(column="like", min_value=1.0), layout, repo.cfg, fw.ICFG)
    rng = np.random.default_rng(levels)
    users = np.array([1, 2, 3, 4, 5, 6, 424242])  # user 6 starts on day 7, 424242 never appears
    pool = np.append(items["item_id"].to_numpy(), 99999)  # items 137..139 are created on day 6, 99999 never
    compared = []
    for at in (fw.START + pd.Timedelta(days=2), fw.START + pd.Timedelta(days=6),
               fw.START + pd.Timedelta(days=6, hours=13), fw.START + pd.Timedelta(days=9)):
        cands = np.stack([rng.choice(pool, 12, replace=False) for _ in users])
        cands[:, 0] = 139  # a late item in every row: unknown before day 6, known from then on
        got = mem.frame(at, users, cands, ev)
        edf = pd.DataFrame({"user_id": np.repeat(users, cands.shape[1]), "item_id": cands.reshape(-1),
                            "event_timestamp": at})
        want = repo.historical(edf, FULL_SERVICE).drop(columns="event_timestamp")
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        compared.append(got)
    both = pd.concat(compared)
    # the comparison covers every case: known and unknown users/items, missing and present match features
    assert both["unknown_user"].any() and not both["unknown_user"].all()
    assert both["unknown_item"].any() and not both["unknown_item"].all()
    assert both["cos_mean"].notna().any() and both["cos_mean"].isna().any()
    assert both[f"sid_recent_match_l{levels - 1}"].gt(0).any() and both["item_positive_rate"].notna().any()


def test_inmemory_refuses_an_interest_prefix_other_than_the_repository(fw):
    items, _ = fw.make_world()
    with pytest.raises(ConfigError, match="features.interests.prefix_dim=64 disagrees with FeatureConfig.prefix_dim=8"):
        InMemoryFeatures(items, PositiveRule(column="like", min_value=1.0), {}, fw.feature_config(),
                         fw.ICFG.model_copy(update={"prefix_dim": 64}))
