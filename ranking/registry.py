"""Ranker kinds -> implementations: how the experiment builds a variant's ranker and how a saved one reloads."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from ranking.dlrm import DLRMConfig, DLRMRanker
from ranking.lgbm import LGBMConfig, LGBMRanker
from ranking.ranker import Ranker

RANKER_TYPES: dict[str, type[Ranker]] = {LGBMRanker.kind: LGBMRanker, DLRMRanker.kind: DLRMRanker}
CONFIG_TYPES: dict[str, type[BaseModel]] = {LGBMRanker.kind: LGBMConfig, DLRMRanker.kind: DLRMConfig}


def _type(kind: str) -> type[Ranker]:
    if kind not in RANKER_TYPES:
        raise ValueError(f"unknown ranker '{kind}'; choose one of {sorted(RANKER_TYPES)}")
    return RANKER_TYPES[kind]


def new_ranker(kind: str, config: BaseModel | None = None) -> Ranker:
    """An unfitted ranker of `kind` with `config` (that kind's config model; None = its defaults)."""
    cls = _type(kind)
    config = config if config is not None else CONFIG_TYPES[kind]()
    if not isinstance(config, CONFIG_TYPES[kind]):
        raise TypeError(f"ranker '{kind}' takes a {CONFIG_TYPES[kind].__name__}, got {type(config).__name__}")
    return cls(config)


def load_ranker(kind: str, directory: str | Path) -> Ranker:
    """The ranker of `kind` saved in `directory` (its `save`)."""
    return _type(kind).load(directory)
