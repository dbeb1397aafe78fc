"""Bad input files are DataErrors naming the file (and column), never a traceback; nothing is written."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from recsys.data.config import DataConfig
from recsys.data.prepare import prepare_dataset
from recsys.errors import DataError


@pytest.fixture
def ml_copy(movielens_dir, tmp_path):
    """A MovieLens-small folder (movies.csv, ratings.csv) to damage."""
    src = tmp_path / "ml"
    src.mkdir()
    for name in ("movies.csv", "ratings.csv"):
        shutil.copy(movielens_dir / name, src / name)
    return src


def _refused(cfg: DataConfig, out) -> str:
    with pytest.raises(DataError) as err:
        prepare_dataset(cfg, out)
    assert not out.exists()
    return str(err.value)


@pytest.mark.parametrize("damage, expect", [
    (lambda p: (p / "ratings.csv").write_bytes(b""), "ratings.csv: file is empty"),
    (lambda p: (p / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"), "ratings.csv: table is empty"),
    (lambda p: (p / "ratings.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x81\x82"), "ratings.csv: cannot parse"),
    (lambda p: (p / "ratings.csv").write_text("userId,movieId,score\n1,1,4\n"), "missing column(s) ['rating'"),
    (lambda p: (p / "ratings.csv").write_text("userId,movieId,rating,timestamp\nalice,1,4,964982703\n"),
     "ratings.csv: column 'userId': 1 non-integer id(s)"),
    (lambda p: (p / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,yesterday\n"),
     "ratings.csv: column 'timestamp': 1 missing or non-numeric Unix timestamp"),
    (lambda p: (p / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,good,964982703\n"),
     "ratings.csv: column 'rating': label values must be numeric"),
    (lambda p: (p / "movies.csv").write_text("movieId,title,genres\n1,A (1995),Drama\n1,B (1996),Drama\n"),
     "movies.csv: column 'item_id': 1 duplicate item id"),
    (lambda p: (p / "movies.csv").unlink(), "movies.csv: file not found"),
    (lambda p: ((p / "ratings.csv").unlink(), (p / "ratings.csv").mkdir()), "not a MovieLens folder"),
])
def test_damaged_movielens(ml_copy, tmp_path, damage, expect):
    damage(ml_copy)
    assert expect in _refused(DataConfig(source="movielens", path=ml_copy), tmp_path / "out")


def test_movielens_folder_missing_or_a_file(tmp_path):
    assert "not found (or not a folder)" in _refused(DataConfig(source="movielens", path=tmp_path / "nope"),
                                                       tmp_path / "out")
    (tmp_path / "f").write_text("x")
    assert "f: MovieLens folder not found" in _refused(DataConfig(source="movielens", path=tmp_path / "f"),
                                                         tmp_path / "out")


@pytest.mark.parametrize("damage, expect", [
    (lambda p: (p / "items.parquet").write_bytes(b""), "items.parquet: cannot read parquet"),
    (lambda p: (p / "interactions.parquet").write_bytes(b"PAR1 not really"), "interactions.parquet: cannot read"),
    (lambda p: (p / "items.parquet").unlink(), "items.parquet: file not found"),
    (lambda p: pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": ["2026-01-03"]}).to_parquet(
        p / "interactions.parquet"), "positive rule column 'click' (data.positive.column) not found"),
])
def test_damaged_parquet(write_source, config, tmp_path, damage, expect):
    src = write_source()
    damage(src)
    assert expect in _refused(config(src), tmp_path / "out")


def test_parquet_source_is_not_a_folder(config, tmp_path):
    assert "source folder not found" in _refused(config(tmp_path / "nope"), tmp_path / "out")


def test_partitioned_parquet_tables_are_read(write_source, config, tables, tmp_path):
    """A table may be a folder of parquet parts (Spark's output); its files enter the fingerprint."""
    items, inter = tables
    src = write_source()
    (src / "interactions.parquet").unlink()
    (src / "interactions.parquet").mkdir()
    inter.iloc[:15].to_parquet(src / "interactions.parquet" / "part-0.parquet")
    inter.iloc[15:].to_parquet(src / "interactions.parquet" / "part-1.parquet")
    ds = prepare_dataset(config(src), tmp_path / "out")
    assert len(ds.interactions) == 30
    assert sorted(ds.manifest.source_inputs["files"]) == [
        "interactions.parquet/part-0.parquet", "interactions.parquet/part-1.parquet", "items.parquet"]
