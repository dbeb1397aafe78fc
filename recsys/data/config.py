"""Which data a run uses and how it is split."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SplitConfig(BaseModel):
    """Global temporal cut-offs as fractions of events (quantiles of interaction time).

    Both periods must be non-empty: rankers train on the valid period and are evaluated on the test period.
    """

    model_config = ConfigDict(extra="forbid")
    valid_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.15, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError("valid_fraction + test_fraction must be < 1")
        return self

    def fractions(self) -> tuple[float, float]:
        return self.valid_fraction, self.test_fraction


class PositiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    min_value: float


class DataConfig(BaseModel):
    """source: synthetic (the embedded default world), movielens (a MovieLens folder) or parquet (your tables).

    feedback: auto (recognised from the positive rule: every interaction positive = implicit), explicit (the
    interactions are impressions with both classes; refused on data without negatives) or implicit (every
    interaction is a positive: purchases, clicks without impressions; ranking samples the negatives).
    """

    model_config = ConfigDict(extra="forbid")
    source: Literal["synthetic", "movielens", "parquet"] = "synthetic"
    path: Path | None = None
    posters: Path | None = None
    split: SplitConfig = SplitConfig()
    unknown_items: Literal["error", "skip"] = "error"
    labels: dict[str, str] | None = None
    positive: PositiveConfig | None = None
    feedback: Literal["auto", "explicit", "implicit"] = "auto"

    @model_validator(mode="after")
    def _paths(self) -> DataConfig:
        if self.source in ("movielens", "parquet") and self.path is None:
            raise ValueError(f"data.path is required for source '{self.source}'")
        if self.source == "parquet" and self.positive is None:
            raise ValueError("data.positive (column, min_value) is required for source 'parquet'")
        if self.posters is not None and self.source != "movielens":
            raise ValueError("data.posters applies to source 'movielens' only")
        return self
