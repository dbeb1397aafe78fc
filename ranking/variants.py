"""Ranker variants: which feature columns (and which ranker) each row of the comparison table uses.

In the pipeline the variants are the versioned Feast FeatureServices (`features.definitions.SERVICE_BY_VARIANT`):
a feature added to a service flows into its variant. Per embedding set (`ranking.embedding_sets`):
  - ``baseline``:  ids (user_id, item_id as categorical) + item/user statistics (the primary set only: it does
    not depend on the embedding)
  - ``match``:     baseline + match features (user history x candidate similarities)
  - ``match_sid``: match + candidate semantic IDs (sid_k categorical) and sid_*_match_l* flags
  - ``sid``:       baseline + the semantic-ID features of match_sid (the drop-group reference of the embedding
    match features)
every service carries the collaborative score ``cf_score`` where the repository has it (features.definitions).
secondary sets' variants carry the set's suffix (``match_content``); DLRM rows repeat baseline and match_sid
with ``ranker="dlrm"``. `default_variants` builds the same three from whatever columns a frame has (no Feast).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ranking.embedding_sets import EmbeddingSet, set_columns
from ranking.ranker import RANKER_KINDS

logger = logging.getLogger(__name__)

ID_FEATURES: tuple[str, ...] = ("user_id", "item_id")
SERVICE_VARIANTS: tuple[str, ...] = ("baseline", "match", "match_sid")
SID_VARIANT = "sid"
"""baseline + the semantic-ID features of match_sid (no embedding match features): the drop-group reference."""
DLRM_VARIANTS: tuple[str, ...] = ("baseline", "match_sid")
"""The variants that also get a DLRM row when the DLRM ranker is enabled."""
DEFAULT_STAT_FEATURES: tuple[str, ...] = (
    "item_impressions", "item_positives", "item_positive_rate",
    "user_impressions", "user_positives", "user_positive_rate", "hist_len",
)
DEFAULT_MATCH_FEATURES: tuple[str, ...] = (
    "cos_mean", "cos_recency", "cos_last", "cos_centroid_max", "cos_centroid_wavg", "hist_sim_count",
)
COLLABORATIVE_FEATURES: tuple[str, ...] = ("cf_score",)
"""Baseline features where the frame has them (the collaborative score, features.match_features)."""
SID_PATTERN = re.compile(r"^sid_\d+$")
SID_MATCH_PATTERN = re.compile(r"^sid_\w+_match_l\d+$")


@dataclass(frozen=True)
class VariantSpec:
    """One feature set: `features` in model order; `categorical` is the subset treated as categories.

    ranker: a kind of `ranking.ranker.RANKER_KINDS` ("lgbm" LightGBM, "dlrm" TorchRec DLRM).
    """

    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    ranker: str = "lgbm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        if self.ranker not in RANKER_KINDS:
            raise ValueError(f"unknown ranker '{self.ranker}'; choose one of {RANKER_KINDS}")
        extra = [c for c in self.categorical if c not in self.features]
        if extra:
            raise ValueError(f"categorical {extra} not in features {list(self.features)}")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"duplicate features in {list(self.features)}")


def default_variants(columns: Iterable[str], stat_features: Sequence[str] = DEFAULT_STAT_FEATURES,
                     match_features: Sequence[str] = DEFAULT_MATCH_FEATURES,
                     include_ids: bool = True) -> dict[str, VariantSpec]:
    """baseline / match / match_sid from the columns present in the feature frame.

    Listed features missing from `columns` are skipped (logged); a variant that adds nothing over the previous
    one is left out.
    """
    cols = list(columns)
    present = set(cols)
    ids = [c for c in ID_FEATURES if include_ids and c in present]
    stats = [c for c in (*stat_features, *COLLABORATIVE_FEATURES) if c in present]
    match = [c for c in match_features if c in present]
    missing = [c for c in (*stat_features, *match_features) if c not in present]
    if missing:
        logger.info("default_variants: features not in the frame, skipped: %s", missing)
    sids = [c for c in cols if SID_PATTERN.match(c)]
    sid_match = [c for c in cols if SID_MATCH_PATTERN.match(c)]
    if not ids and not stats:
        raise ValueError(f"no baseline features (ids or statistics) among columns {cols}")
    out = {"baseline": VariantSpec((*ids, *stats), tuple(ids))}
    if match:
        out["match"] = VariantSpec((*ids, *stats, *match), tuple(ids))
    if sids or sid_match:
        prev = out.get("match", out["baseline"])
        out["match_sid"] = VariantSpec((*prev.features, *sids, *sid_match), (*ids, *sids))
    return out


def build_variants(features_by_set: Mapping[str, dict[str, list[str]]], sets: Sequence[EmbeddingSet],
                   rankers: Sequence[str]) -> dict[str, VariantSpec]:
    """Variants from each set's FeatureService columns (features_by_set: set name -> variant -> columns).

    rankers: the enabled kinds; "dlrm" adds dlrm_<variant> rows for DLRM_VARIANTS, no "lgbm" drops the LightGBM
    rows.
    """
    variants: dict[str, VariantSpec] = {}
    for s in sets:
        feats = features_by_set[s.name]
        rename = set_columns(feats, s.suffix)
        for variant in SERVICE_VARIANTS:
            if variant == "baseline" and not s.primary:
                continue
            variants[variant + s.suffix] = _spec(feats[variant], rename)
        if "match_sid" in feats:  # match_sid without its embedding match features: what the SIDs alone add
            sid_only = [*feats["baseline"], *[c for c in feats["match_sid"] if c not in feats["match"]]]
            variants[SID_VARIANT + s.suffix] = _spec(sid_only, rename)
    if "dlrm" in rankers:
        for v in DLRM_VARIANTS:
            base = variants[v]
            variants[f"dlrm_{v}"] = VariantSpec(base.features, base.categorical, ranker="dlrm")
    if "lgbm" not in rankers:
        variants = {k: v for k, v in variants.items() if v.ranker != "lgbm"}
    return variants


def _spec(columns: Sequence[str], rename: Mapping[str, str]) -> VariantSpec:
    cols = [rename.get(c, c) for c in columns]
    cat = [*ID_FEATURES, *[rename.get(c, c) for c in columns if SID_PATTERN.match(c)]]
    return VariantSpec((*ID_FEATURES, *cols), tuple(cat))


def baseline_candidates(variants: Mapping[str, VariantSpec]) -> list[str]:
    """The variants without match features, one per ranker: the strongest of them (by validation AUC) is the
    reference of every lift."""
    return [v for v in ("baseline", "dlrm_baseline") if v in variants]


def ranker_baselines(variants: Mapping[str, VariantSpec]) -> dict[str, str]:
    """variant -> the baseline of its own ranker (the per-ranker lift), for every variant that is not one."""
    own = {"lgbm": "baseline", "dlrm": "dlrm_baseline"}
    return {v: own[spec.ranker] for v, spec in variants.items()
            if v not in baseline_candidates(variants) and own[spec.ranker] in variants}


def attribution_pairs(variants: Mapping[str, VariantSpec], sets: Sequence[EmbeddingSet]) -> list[tuple[str, str, str]]:
    """(group, variant, the variant without that group) of every drop-group comparison the variants allow: per
    embedding set, match_sid against sid (the embedding match features' share) and against match (the semantic
    IDs' share)."""
    pairs = []
    for s in sets:
        full, match, sid = (f"{v}{s.suffix}" for v in ("match_sid", "match", SID_VARIANT))
        if full in variants and sid in variants:
            pairs.append((f"embedding match ({s.name})", full, sid))
        if full in variants and match in variants:
            pairs.append((f"semantic IDs ({s.name})", full, match))
    return pairs


def attribution_only(variants: Mapping[str, VariantSpec], sets: Sequence[EmbeddingSet]) -> list[str]:
    """The variants that exist only as drop-group references (sid, sid_<set>): reported, not simulated."""
    return [v for v in variants if v in {SID_VARIANT + s.suffix for s in sets}]


def twin_comparisons(variants: Mapping[str, VariantSpec], sets: Sequence[EmbeddingSet]) -> dict[str, str]:
    """variant -> its twin on a secondary set (e.g. CRE's match vs content-only match_content), where both ran."""
    return {v: v + s.suffix for s in sets if not s.primary for v in variants if v + s.suffix in variants}
