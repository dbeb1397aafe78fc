"""Ranker variants and embedding sets (ranking/variants.py, ranking/embedding_sets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranking.embedding_sets import EmbeddingSet, primary_set, set_columns, set_of_variant
from ranking.variants import (
    VariantSpec,
    attribution_pairs,
    baseline_candidates,
    build_variants,
    default_variants,
    ranker_baselines,
    twin_comparisons,
)

SERVICES = {"baseline": ["item_positive_rate", "hist_len"],
            "match": ["item_positive_rate", "hist_len", "cos_mean"],
            "match_sid": ["item_positive_rate", "hist_len", "cos_mean", "sid_0", "sid_1", "sid_recent_match_l0"]}
SETS = [EmbeddingSet("cre", Path("cre.parquet"), Path("run")),
        EmbeddingSet("content", Path("content.parquet"), Path("run/content_only"), "_content")]


def test_default_variants_compose():
    cols = ["user_id", "item_id", "event_timestamp", "label", "item_positive_rate", "hist_len", "cos_mean",
            "cos_last", "sid_0", "sid_1", "sid_recent_match_l0", "other"]
    v = default_variants(cols)
    ids = ("user_id", "item_id")
    assert v["baseline"] == VariantSpec((*ids, "item_positive_rate", "hist_len"), ids)
    assert v["match"].features == (*v["baseline"].features, "cos_mean", "cos_last")
    assert v["match_sid"].features == (*v["match"].features, "sid_0", "sid_1", "sid_recent_match_l0")
    assert v["match_sid"].categorical == ("user_id", "item_id", "sid_0", "sid_1")
    assert set(default_variants(cols[:6])) == {"baseline"}                  # nothing to match on: baseline only


def test_variant_spec_validation():
    with pytest.raises(ValueError, match="not in features"):
        VariantSpec(("a",), ("b",))
    with pytest.raises(ValueError, match="duplicate"):
        VariantSpec(("a", "a"))
    with pytest.raises(ValueError, match="unknown ranker 'xgb'"):
        VariantSpec(("a",), ranker="xgb")


def test_set_columns_suffix_only_embedding_derived_features():
    assert set_columns(SERVICES, "") == {}
    assert set_columns(SERVICES, "_content") == {c: c + "_content" for c in
                                                 ("cos_mean", "sid_0", "sid_1", "sid_recent_match_l0")}


def test_variants_of_two_sets_and_both_rankers():
    v = build_variants({"cre": SERVICES, "content": SERVICES}, SETS, ["lgbm", "dlrm"])
    assert list(v) == ["baseline", "match", "match_sid", "sid", "match_content", "match_sid_content", "sid_content",
                       "dlrm_baseline", "dlrm_match_sid"]
    assert v["baseline"].features == ("user_id", "item_id", "item_positive_rate", "hist_len")
    # sid: match_sid without its embedding match features (the drop-group reference)
    assert v["sid_content"].features == ("user_id", "item_id", "item_positive_rate", "hist_len", "sid_0_content",
                                         "sid_1_content", "sid_recent_match_l0_content")
    assert v["sid"].categorical == ("user_id", "item_id", "sid_0", "sid_1")
    assert v["match_content"].features == ("user_id", "item_id", "item_positive_rate", "hist_len", "cos_mean_content")
    assert v["match_sid_content"].categorical == ("user_id", "item_id", "sid_0_content", "sid_1_content")
    assert v["dlrm_match_sid"] == VariantSpec(v["match_sid"].features, v["match_sid"].categorical, "dlrm")
    only_dlrm = build_variants({"cre": SERVICES, "content": SERVICES}, SETS, ["dlrm"])
    assert set(only_dlrm) == {"dlrm_baseline", "dlrm_match_sid"}
    assert twin_comparisons(v, SETS) == {"match": "match_content", "match_sid": "match_sid_content",
                                         "sid": "sid_content"}
    assert baseline_candidates(v) == ["baseline", "dlrm_baseline"] and baseline_candidates(only_dlrm) == [
        "dlrm_baseline"]
    assert ranker_baselines(v) == {**{k: "baseline" for k in ("match", "match_sid", "sid", "match_content",
                                                              "match_sid_content", "sid_content")},
                                   "dlrm_match_sid": "dlrm_baseline"}
    assert attribution_pairs(v, SETS) == [("embedding match (cre)", "match_sid", "sid"),
                                          ("semantic IDs (cre)", "match_sid", "match"),
                                          ("embedding match (content)", "match_sid_content", "sid_content"),
                                          ("semantic IDs (content)", "match_sid_content", "match_content")]
    # each pair differs by exactly its group: the variant's features are the reference's plus that group
    for group, full, without in attribution_pairs(v, SETS):
        added = set(v[full].features) - set(v[without].features)
        assert set(v[without].features) < set(v[full].features) and added
        assert all(("sid" in f) == group.startswith("semantic") for f in added)


def test_set_of_a_variant():
    assert primary_set(SETS).name == "cre"
    assert set_of_variant("match_sid_content", SETS).name == "content"
    assert set_of_variant("dlrm_match_sid", SETS).name == "cre"
    with pytest.raises(ValueError, match="primary"):
        primary_set(SETS[1:])
