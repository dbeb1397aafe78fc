"""Small canonical sources built in tmp_path: a parquet folder that a run can use (three users, ten days)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from recsys.data.config import DataConfig


def small_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """5 items, 30 interactions: users 1-3 once a day for 10 days, alternating clicks (train/valid/test usable)."""
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5],
                          "created_at": pd.to_datetime(["2026-01-01"] * 5, utc=True),
                          "title": ["a", "b", "c", "d", "e"]})
    rows = [{"user_id": u, "item_id": (u + d) % 5 + 1,
             "timestamp": pd.Timestamp("2026-01-03", tz="UTC") + pd.Timedelta(days=d, hours=u),
             "click": float((u + d) % 2)} for d in range(10) for u in (1, 2, 3)]
    return items, pd.DataFrame(rows)


@pytest.fixture
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return small_tables()


@pytest.fixture
def write_source(tmp_path) -> Callable[..., Path]:
    """write_source(items=None, interactions=None, name="src") -> a parquet source folder."""
    def write(items: pd.DataFrame | None = None, interactions: pd.DataFrame | None = None, name: str = "src") -> Path:
        i, t = small_tables()
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (i if items is None else items).to_parquet(root / "items.parquet")
        (t if interactions is None else interactions).to_parquet(root / "interactions.parquet")
        return root
    return write


def parquet_config(src: Path, **over) -> DataConfig:
    """DataConfig for a parquet source with positive click >= 1 and a 60/20/20 split."""
    return DataConfig(**{"source": "parquet", "path": src, "positive": {"column": "click", "min_value": 1},
                         "split": {"valid_fraction": 0.2, "test_fraction": 0.2}, **over})


@pytest.fixture
def config() -> Callable[..., DataConfig]:
    return parquet_config
