"""The source tables of a run take the prefix and the SID levels from the FeatureConfig, and refuse to disagree."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from features.interests import InterestConfig, daily_snapshots, mine_interests
from features.schema import SOURCES
from features.tables import build_feature_tables, interest_config_for
from recsys.errors import ConfigError


def _dataset(ev: pd.DataFrame) -> SimpleNamespace:
    """What build_feature_tables reads of a Dataset: the interactions and the positive rule."""
    return SimpleNamespace(interactions=ev, is_positive=lambda df: df["like"] >= 1)


@pytest.mark.parametrize("levels", [2, 4])
def test_tables_are_mined_with_the_feature_config(fw, levels):
    items, ev = fw.make_world(sid_levels=levels)
    cfg = fw.feature_config(levels)
    start, end = fw.START, fw.START + pd.Timedelta(days=11)
    tabs = build_feature_tables(_dataset(ev), items, start, end, cfg)
    assert set(tabs) == set(SOURCES)
    # without an InterestConfig: the defaults, with the repository's prefix
    expect = mine_interests(ev.loc[ev["like"] >= 1], items, daily_snapshots(start, end),
                            InterestConfig(prefix_dim=cfg.prefix_dim), sid_levels=levels)
    pd.testing.assert_frame_equal(tabs["user_interests"], expect)
    row = tabs["user_interests"].iloc[-1]
    assert len(row.recent_prefix) == len(row.recent_items) * cfg.prefix_dim
    assert len(row.recent_sids) == len(row.recent_items) * levels


def test_an_interest_prefix_other_than_the_feature_config_is_refused(fw):
    cfg = fw.feature_config()
    assert interest_config_for(cfg, fw.ICFG) is fw.ICFG
    with pytest.raises(ConfigError, match="features.interests.prefix_dim=64 disagrees with FeatureConfig.prefix_dim=8"):
        interest_config_for(cfg, InterestConfig())
    items, ev = fw.make_world()
    with pytest.raises(ConfigError, match="prefix_dim"):
        build_feature_tables(_dataset(ev), items, fw.START, fw.START + pd.Timedelta(days=3), cfg, InterestConfig())
