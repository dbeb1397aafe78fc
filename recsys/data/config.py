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
    folds: int = Field(1, ge=1, description="rolling-origin folds: 1 = the single split above; K > 1 = K "
                       "consecutive evaluation windows of test_fraction each, every fold refitted from scratch "
                       "on the events before its window (recsys.rolling)")
    fold: int | None = Field(None, ge=0, description="the fold this run evaluates (its dataset ends with that "
                             "fold's window): set by the rolling-origin driver, or by hand to run one fold alone "
                             "(`--set data.split.fold=4`: that fold's main job in --run-dir)")

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.valid_fraction + self.folds * self.test_fraction >= 1:
            raise ValueError(f"valid_fraction + folds x test_fraction must be < 1 (got {self.valid_fraction} + "
                             f"{self.folds} x {self.test_fraction}): the first fold needs training events")
        if self.fold is not None and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} does not exist with folds={self.folds}")
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
