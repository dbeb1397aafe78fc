"""Canonical data layer: adapters, validation of bad input, temporal split, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.data.adapters.movielens import read_movielens
from recsys.data.config import DataConfig
from recsys.data.dataset import build_dataset, load_dataset, write_dataset
from recsys.data.prepare import prepare_dataset
from recsys.data.schema import PositiveRule
from recsys.data.split import TemporalSplit, leave_last_out
from recsys.errors import ConfigError, DataError
from recsys.io import atomic_directory


def _ml_config(root: Path, **over) -> DataConfig:
    return DataConfig(source="movielens", path=root, split={"valid_fraction": 0.1, "test_fraction": 0.1}, **over)


@pytest.fixture(scope="module")
def movielens(movielens_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml") / "dataset"
    return prepare_dataset(_ml_config(movielens_dir, posters=movielens_dir / "posters"), out)


def test_movielens_counts(movielens):
    s = movielens.summary()
    assert (s["users"], s["items"], s["interactions"]) == (610, 9742, 100836)
    assert (s["items_with_image"], s["items_with_text"], s["items_with_audio"]) == (9517, 9742, 0)
    assert movielens.manifest.extra["items_missing_image"] == 9742 - 9517
    assert movielens.manifest.modalities == ["text", "image"]
    assert movielens.positive == PositiveRule("rating", 4.0)
    assert movielens.feedback == "explicit" and s["feedback"].startswith("explicit")
    assert movielens.manifest.skipped == {"missing_label_rows": 0, "unknown_item_rows": 0,
                                          "missing_image_files": 0, "missing_audio_files": 0}
    assert s["skipped missing_label_rows"] == 0


def test_movielens_round_trip(movielens):
    again = load_dataset(movielens.root)
    assert again.manifest.content_hash == movielens.manifest.content_hash
    pd.testing.assert_frame_equal(again.interactions, movielens.interactions)
    assert again.items["categories"].iloc[0] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]


def test_movielens_tags_only_from_train_period(movielens, movielens_dir):
    tags = pd.read_csv(movielens_dir / "tags.csv")
    tags["timestamp"] = pd.to_datetime(tags["timestamp"], unit="s", utc=True)
    late = tags[tags["timestamp"] >= movielens.split.train_end]
    early = tags[tags["timestamp"] < movielens.split.train_end]
    only_late = set(late["tag"].str.lower().str.strip()) - set(early["tag"].str.lower().str.strip())
    assert only_late, "fixture expectation: some tags are written only after the train cut-off"
    all_item_tags = {t for ts in movielens.items["tags"] for t in ts}
    assert not (only_late & all_item_tags)


def test_split_has_no_test_rows_in_train(movielens):
    sp = movielens.split
    train, valid, test = (f(movielens.interactions) for f in (sp.train, sp.valid, sp.test))
    assert len(train) + len(valid) + len(test) == len(movielens.interactions)
    assert train["timestamp"].max() < sp.train_end <= valid["timestamp"].min()
    assert valid["timestamp"].max() < sp.valid_end <= test["timestamp"].min()
    assert 0.08 < len(test) / len(movielens.interactions) < 0.12


def test_leave_last_out():
    df = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3], "item_id": [10, 11, 12, 10, 13, 14],
                       "timestamp": pd.to_datetime([3, 1, 2, 5, 6, 1], unit="s", utc=True)})
    hist, last = leave_last_out(df)
    assert last.set_index("user_id")["item_id"].to_dict() == {1: 10, 2: 13}
    assert sorted(hist["item_id"]) == [10, 11, 12]


def test_ml100k_layout(tmp_path):
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n"
                                     "2\t2\t2\t881250952\n3\t1\t5\t881250953\n")
    genres = "|".join(["0"] * 19)
    (tmp_path / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||url|0|0|0|1|1|1{genres[11:]}\n"
                                     f"2|GoldenEye (1995)|01-Jan-1995||url|0|1|1|0{genres[7:]}\n",
                                     encoding="latin-1")
    ds = read_movielens(tmp_path, split_fractions=(0.2, 0.2))
    assert len(ds.items) == 2 and len(ds.interactions) == 5
    assert ds.items.set_index("item_id").loc[1, "categories"] == ["Animation", "Children", "Comedy"]


def _tables():
    """3 items, 12 interactions over 6 days: users 1-2 active every day, so each period has history."""
    items = pd.DataFrame({"item_id": [1, 2, 3], "created_at": ["2026-01-01", "2026-01-01", "2026-01-02"],
                          "title": ["a", "b", None], "tags": [["x"], [], None]})
    inter = pd.DataFrame({"user_id": [1, 2] * 6, "item_id": [1, 2, 3] * 4,
                          "timestamp": pd.date_range("2026-01-03", periods=12, freq="12h", tz="UTC"),
                          "click": [1, 1, 0, 1, 0, 0] * 2})
    return items, inter


def _write(root: Path, items=None, inter=None):
    root.mkdir(parents=True, exist_ok=True)
    i, t = _tables()
    (i if items is None else items).to_parquet(root / "items.parquet")
    (t if inter is None else inter).to_parquet(root / "interactions.parquet")
    return root


def _prepare(src: Path, out: Path, **over):
    cfg = DataConfig(**{"source": "parquet", "path": src, "positive": {"column": "click", "min_value": 1},
                        "split": {"valid_fraction": 0.2, "test_fraction": 0.2}, **over})
    return prepare_dataset(cfg, out)


def test_parquet_adapter(tmp_path):
    src = _write(tmp_path / "src")
    ds = _prepare(src, tmp_path / "out")
    assert list(ds.manifest.labels) == ["click"]
    assert ds.manifest.row_counts == {"items": 3, "interactions": 12, "users": 2, "queries": 0}
    assert load_dataset(tmp_path / "out").items["tags"].tolist() == [["x"], [], []]


@pytest.mark.parametrize("case, expect", [
    ("missing_column", "missing required column"),
    ("duplicate_ids", "duplicate item id"),
    ("unknown_item", "unknown items"),
    ("bad_timestamp", "unparsable"),
    ("string_ids", "ids must be integers"),
    ("empty", "table is empty"),
    ("bad_label", "label values must be numeric"),
])
def test_bad_input_names_file_and_column(tmp_path, case, expect):
    items, inter = _tables()
    if case == "missing_column":
        items = items.drop(columns=["created_at"])
    elif case == "duplicate_ids":
        items.loc[2, "item_id"] = 1
    elif case == "unknown_item":
        inter.loc[4, "item_id"] = 99
    elif case == "bad_timestamp":
        inter["timestamp"] = inter["timestamp"].astype(str)
        inter.loc[1, "timestamp"] = "yesterday-ish"
    elif case == "string_ids":
        inter["user_id"] = inter["user_id"].astype(str)
        inter.loc[0, "user_id"] = "alice"
    elif case == "empty":
        inter = inter.iloc[:0]
    elif case == "bad_label":
        inter["click"] = inter["click"].astype(str)
        inter.loc[0, "click"] = "yes"
    src = _write(tmp_path / "src", items, inter)
    with pytest.raises(DataError) as err:
        _prepare(src, tmp_path / "out")
    assert expect in str(err.value)
    assert "parquet" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unknown_items_can_be_skipped_and_counted(tmp_path):
    items, inter = _tables()
    inter.loc[4, "item_id"] = 99
    src = _write(tmp_path / "src", items, inter)
    ds = _prepare(src, tmp_path / "out", unknown_items="skip")
    assert len(ds.interactions) == 11
    assert ds.manifest.skipped["unknown_item_rows"] == 1
    assert ds.summary()["skipped unknown_item_rows"] == 1


def test_unreadable_parquet(tmp_path):
    src = _write(tmp_path / "src")
    (src / "interactions.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match="interactions.parquet.*cannot read"):
        _prepare(src, tmp_path / "out")


def test_failed_write_keeps_previous_dataset(tmp_path):
    src = _write(tmp_path / "src")
    out = tmp_path / "out"
    first = _prepare(src, out)
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "items.parquet").write_text("half written")
            raise RuntimeError("interrupted")
    assert load_dataset(out).manifest.content_hash == first.manifest.content_hash
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_content_hash_changes_with_content(tmp_path):
    items, inter = _tables()
    a = build_dataset(name="a", source="t", items=items, interactions=inter, labels={"click": ""},
                      positive=PositiveRule("click", 1), split=(0.2, 0.2))
    inter2 = inter.copy()
    inter2.loc[0, "click"] = 0
    b = build_dataset(name="a", source="t", items=items, interactions=inter2, labels={"click": ""},
                      positive=PositiveRule("click", 1), split=(0.2, 0.2))
    ha = write_dataset(a, tmp_path / "a").manifest.content_hash
    hb = write_dataset(b, tmp_path / "b").manifest.content_hash
    assert ha != hb
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["content_hash"] == ha


def test_split_validation():
    with pytest.raises(ConfigError, match="data.split.valid_fraction"):
        TemporalSplit.from_fractions(pd.Series(pd.date_range("2026-01-01", periods=5, tz="UTC")), 0.6, 0.5)
