"""The Feast definitions follow the FeatureConfig (SID levels, prefix) and the registries; services are named once."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from features import match_features as mf
from features.definitions import FULL_SERVICE, SERVICE_BY_VARIANT, SERVICES, FeatureConfig, build_definitions
from features.schema import SOURCES, sid_columns


def _objects(tmp_path, cfg: FeatureConfig) -> dict:
    return {o.name: o for o in build_definitions({s: tmp_path / f"{s}.parquet" for s in SOURCES}, cfg)}


def _names(obj) -> list[str]:
    return [f.name for f in obj.features]


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_schema_follows_the_sid_levels(fw, tmp_path, levels):
    objs = _objects(tmp_path, fw.feature_config(levels))
    sids = sid_columns(levels)
    assert [c for c in _names(objs["item_embedding"]) if c.startswith("sid_")] == sids
    assert objs["item_embedding"].tags["sid_levels"] == str(levels)
    assert [f.name for f in objs["sid_match_v1"].features] == list(mf.sid_match_features(levels))
    assert len(objs["sid_match_v1"].features) == 2 * levels
    full = objs[FULL_SERVICE]
    in_service = [f.name for p in full.feature_view_projections for f in p.features]
    assert [c for c in in_service if c.startswith("sid_") and c[4:].isdigit()] == sids
    assert f"sid_recent_match_l{levels - 1}" in in_service and f"sid_recent_match_l{levels}" not in in_service
    recent_sids = next(f for f in objs["user_interests"].features if f.name == "recent_sids")
    assert f"N x {levels}" in recent_sids.description


def test_odfv_schema_derives_from_registry(fw, monkeypatch, tmp_path):
    objs = _objects(tmp_path, fw.feature_config())
    assert _names(objs["match_v1"]) == list(mf.EMBEDDING_MATCH_FEATURES)
    monkeypatch.setitem(mf.EMBEDDING_MATCH_FEATURES, "cos_last_squared", lambda u, i: mf.cos_last(u, i) ** 2)
    assert "cos_last_squared" in _names(_objects(tmp_path, fw.feature_config())["match_v1"])


def test_services_are_named_by_variant(fw, tmp_path):
    objs = _objects(tmp_path, fw.feature_config())
    assert set(SERVICES) <= set(objs)  # every named service is defined
    features = {v: {f.name for p in objs[s].feature_view_projections for f in p.features}
                for v, s in SERVICE_BY_VARIANT.items()}
    full = {f.name for p in objs[FULL_SERVICE].feature_view_projections for f in p.features}
    assert all(f <= full for f in features.values())  # one retrieval of the full service serves every variant


def test_prefix_longer_than_the_embedding_is_refused():
    with pytest.raises(ValidationError, match="prefix_dim=64 exceeds embedding_dim=32"):
        FeatureConfig(embedding_dim=32)
