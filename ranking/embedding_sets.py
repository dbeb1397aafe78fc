"""Embedding sets: the item-embedding tables whose features the ranking experiment compares.

The primary set (CRE when it ran, else the content model) has its Feast repository in the run directory; with
CRE, the content-only set has a second repository beside it. Every set's embedding-derived columns (match
features, semantic IDs) share one frame, so a secondary set's columns carry its `suffix` (`cos_mean_content`);
the features that do not depend on the embedding (ids, statistics) are the primary set's, without suffix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddingSet:
    name: str                     # "cre" | "content"
    item_embeddings: Path         # the item embeddings parquet (embedding, sid_*)
    repo_dir: Path                # where `features.repo.FeatureRepo` lives (its run directory)
    suffix: str = ""              # "" for the primary set; appended to its embedding-derived columns otherwise

    @property
    def primary(self) -> bool:
        return not self.suffix


def set_columns(features: dict[str, list[str]], suffix: str) -> dict[str, str]:
    """Column renames of a set: its embedding-derived features (those not in the baseline service) + suffix.

    features: variant -> the FeatureService's columns of that set (baseline, match, match_sid).
    """
    base = set(features["baseline"])
    return {c: c + suffix for c in features["match_sid"] if c not in base and suffix}


def primary_set(sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
    found = [s for s in sets if s.primary]
    if len(found) != 1:
        raise ValueError(f"exactly one embedding set must be primary (no suffix), got {[s.name for s in found]}")
    return found[0]


def set_of_variant(variant: str, sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
    """The set a variant's features come from: the secondary set whose suffix ends its name, else the primary."""
    return next((s for s in sets if not s.primary and variant.endswith(s.suffix)), primary_set(sets))
