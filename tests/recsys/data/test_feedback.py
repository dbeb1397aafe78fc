"""Implicit feedback recognised at prepare time; missing labels dropped and counted, never read as negatives."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from recsys.data.config import DataConfig
from recsys.data.dataset import load_dataset
from recsys.data.prepare import prepare_dataset
from recsys.errors import DataError


def test_explicit_impressions_are_recognised(write_source, config, tmp_path):
    ds = prepare_dataset(config(write_source()), tmp_path / "out")
    assert ds.feedback == "explicit"
    assert load_dataset(tmp_path / "out").manifest.feedback == "explicit"


def test_positives_only_log_is_implicit(write_source, config, tables, tmp_path):
    items, inter = tables
    src = write_source(interactions=inter.assign(click=1.0))
    ds = prepare_dataset(config(src), tmp_path / "out")
    assert ds.feedback == "implicit"
    assert ds.summary()["feedback"] == ("implicit: every interaction is positive; ranking samples negatives "
                                        "(ranking.negatives)")
    assert ds.summary()["positive_rate"] == 1.0
    assert load_dataset(tmp_path / "out").feedback == "implicit"


def test_declared_feedback_must_match_the_data(write_source, config, tables, tmp_path):
    items, inter = tables
    positives_only = write_source(interactions=inter.assign(click=1.0), name="pos")
    with pytest.raises(DataError, match=r"interactions.parquet.*data.feedback is 'explicit' but all 30"):
        prepare_dataset(config(positives_only, feedback="explicit"), tmp_path / "a")
    with pytest.raises(DataError, match=r"data.feedback is 'implicit' but 15 of 30 interactions are negative"):
        prepare_dataset(config(write_source(), feedback="implicit"), tmp_path / "b")
    assert prepare_dataset(config(positives_only, feedback="implicit"), tmp_path / "c").feedback == "implicit"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_no_positive_at_all_is_refused(write_source, config, tables, tmp_path):
    items, inter = tables
    src = write_source(interactions=inter.assign(click=0.0))
    with pytest.raises(DataError) as err:
        prepare_dataset(config(src), tmp_path / "out")
    msg = str(err.value)
    assert "interactions.parquet" in msg and "no interaction of 30 is positive" in msg
    assert "data.positive.column=click" in msg and "data.positive.min_value=1" in msg
    assert not (tmp_path / "out").exists()


def test_positives_only_movielens_is_implicit(movielens_dir, tmp_path):
    src = tmp_path / "ml-positive"
    src.mkdir()
    for name in ("movies.csv", "tags.csv"):
        shutil.copy(movielens_dir / name, src / name)
    ratings = pd.read_csv(movielens_dir / "ratings.csv")
    ratings[ratings["rating"] >= 4].to_csv(src / "ratings.csv", index=False)
    ds = prepare_dataset(DataConfig(source="movielens", path=src), tmp_path / "out")
    assert ds.feedback == "implicit"
    assert len(ds.interactions) == 48580 == int((ratings["rating"] >= 4).sum())
    assert ds.manifest.skipped["missing_label_rows"] == 0


def test_missing_labels_are_dropped_and_counted(write_source, config, tables, tmp_path, caplog):
    items, inter = tables
    inter["watch"] = np.float32(0.5)
    inter.loc[[0, 4], "click"] = np.nan     # NaN positive-rule column
    inter.loc[[4, 7, 9], "watch"] = np.nan  # another declared label (row 4 misses both)
    src = write_source(interactions=inter)
    with caplog.at_level("WARNING"):
        ds = prepare_dataset(config(src, labels={"click": "clicked", "watch": "watch ratio"}), tmp_path / "out")
    assert len(ds.interactions) == 30 - 4
    assert ds.manifest.skipped["missing_label_rows"] == 4
    assert ds.manifest.skipped["missing_label_rows.click"] == 2
    assert ds.manifest.skipped["missing_label_rows.watch"] == 3
    assert ds.summary()["skipped missing_label_rows"] == 4
    assert not ds.interactions[["click", "watch"]].isna().any().any()
    assert "dropped 4 interaction(s) with a missing label" in caplog.text


def test_empty_string_labels_are_missing_not_errors(write_source, config, tables, tmp_path):
    items, inter = tables
    inter["click"] = inter["click"].map(lambda v: str(int(v))).astype(object)
    inter.loc[[2, 3], "click"] = ["", "  "]
    ds = prepare_dataset(config(write_source(interactions=inter)), tmp_path / "out")
    assert ds.manifest.skipped["missing_label_rows.click"] == 2 and len(ds.interactions) == 28


def test_movielens_empty_rating_is_counted(movielens_dir, tmp_path):
    src = tmp_path / "ml"
    src.mkdir()
    shutil.copy(movielens_dir / "movies.csv", src / "movies.csv")
    lines = (movielens_dir / "ratings.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    for i in (10, 20, 30):  # userId,movieId,rating,timestamp -> empty rating
        u, m, _, t = rows[i].split(",")
        rows[i] = f"{u},{m},,{t}"
    (src / "ratings.csv").write_text("\n".join([header, *rows]) + "\n")
    ds = prepare_dataset(DataConfig(source="movielens", path=src), tmp_path / "out")
    assert len(ds.interactions) == 100836 - 3
    assert ds.manifest.skipped["missing_label_rows"] == 3
    assert ds.summary()["skipped missing_label_rows"] == 3


def test_inferred_labels_leave_out_columns_with_gaps(write_source, config, tables, tmp_path):
    """Without data.labels, a numeric column with missing values is not taken as a label (no rows lost to it)."""
    items, inter = tables
    inter["dwell"] = np.where(np.arange(30) % 3 == 0, np.nan, 12.0)
    inter["price"] = 2.5
    ds = prepare_dataset(config(write_source(interactions=inter)), tmp_path / "out")
    assert list(ds.manifest.labels) == ["click", "price"]
    assert len(ds.interactions) == 30 and ds.manifest.skipped["missing_label_rows"] == 0
