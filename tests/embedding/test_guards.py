"""Degenerate-output guards, content availability of the item table, and user errors of the embedding stage."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from embedding.encoders.config import EncoderConfig
from embedding.encoders.precomputed import precomputed_vectors
from embedding.encoders.text import resolve_text_model
from embedding.guards import check_embeddings, check_semantic_ids, warn_if_at_chance
from embedding.infer import write_item_embeddings
from recsys.data.dataset import build_dataset
from recsys.data.schema import PositiveRule
from recsys.errors import ConfigError, DataError

IDS = np.arange(10, 30, dtype=np.int64)


def _unit(rng, n=20, d=8):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_constant_zero_and_rank_one_embeddings_stop_the_run(caplog):
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="every one of the 20 item embeddings is zero.*encoders.text.enabled"):
        check_embeddings(IDS, np.zeros((20, 8)), "content")
    with pytest.raises(DataError, match="are the same vector.*embedding.train.stages"):
        check_embeddings(IDS, np.tile(_unit(rng, 1), (20, 1)), "content")
    signs = np.where(rng.random(20) < 0.5, -1.0, 1.0)[:, None]
    with pytest.raises(DataError, match="one direction up to sign"):
        check_embeddings(IDS, signs * _unit(rng, 1), "content")
    emb = _unit(rng)
    emb[[3, 7]] = 0
    with caplog.at_level(logging.WARNING):
        assert check_embeddings(IDS, emb, "content") == {"zero_embeddings": 2}
    assert "2 of 20 items have a zero embedding" in caplog.text and "item_id 13, 17" in caplog.text


def test_semantic_id_guards(caplog):
    same = np.tile([[1, 2, 3]], (20, 1))
    with pytest.raises(DataError, match=r"all 20 items have the same semantic ID \(1, 2, 3\).*codebook_size"):
        check_semantic_ids(same, "sids")
    one_code = np.stack([np.zeros(20, int), np.arange(20), np.zeros(20, int)], 1)
    one_code[0, 0] = 1  # 19 of 20 on level-0 code 0
    with caplog.at_level(logging.WARNING):
        out = check_semantic_ids(one_code, "sids")
    assert out == {"sid_level0_codes": 2.0, "sid_level0_top_share": 0.95}
    assert "19 of 20 items (95.0%) share level-0 semantic ID 0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_semantic_ids(np.stack([np.arange(20) % 4, np.arange(20)], 1), "sids")
    assert not caplog.records


def test_loss_at_chance_warns_naming_the_knobs(caplog):
    at_chance = [{"dataset": "i2i", "loss": 3.45, "chance": 3.47}] * 10
    learnt = [{"dataset": "label", "loss": 1.0, "chance": 3.47}] * 10
    with caplog.at_level(logging.WARNING):
        ratios = warn_if_at_chance(at_chance + learnt, {"items": 5, "text": 0, "vec_audio": 5})
    assert ratios["label"] == pytest.approx(1.0 / 3.47) and ratios["i2i"] == pytest.approx(3.45 / 3.47)
    (record,) = caplog.records
    msg = record.getMessage()
    assert "i2i loss never left chance" in msg and "embedding.train.stages[].steps" in msg
    assert "embedding.train.lr" in msg and "'vec_audio': 5" in msg


def test_item_table_timestamp_is_first_availability(tmp_path):
    """created_at after the item's first interaction (catalogue ingestion time): the table's event_timestamp is
    the first interaction, so point-in-time joins find the embedding at every example."""
    items = pd.DataFrame({"item_id": IDS[:4], "title": ["a", "b", "c", "d"],
                          "created_at": pd.Timestamp("2024-06-01", tz="UTC")})
    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": IDS[:3], "like": [1.0, 0.0, 1.0],
                          "timestamp": pd.to_datetime(["2024-02-01", "2024-02-02", "2024-07-01"], utc=True)})
    ds = build_dataset(name="late", source="test", items=items, interactions=inter, labels={"like": "like"},
                       positive=PositiveRule("like", 1.0), split=(0.3, 0.3))
    emb = _unit(np.random.default_rng(1), 4)
    df = pd.read_parquet(write_item_embeddings(ds, IDS[:4], emb, None, "v", tmp_path / "t.parquet"))
    assert df["event_timestamp"].tolist() == list(pd.to_datetime(
        ["2024-02-01", "2024-02-02", "2024-06-01", "2024-06-01"], utc=True))  # item 3: no interaction
    with pytest.raises(DataError, match="item_id 99 is not in the dataset's items"):
        write_item_embeddings(ds, np.array([10, 11, 12, 99]), emb, None, "v", tmp_path / "u.parquet")


def test_precomputed_vector_errors_name_the_column_and_item():
    base = pd.DataFrame({"item_id": [1, 2, 3]})
    ok = precomputed_vectors(base.assign(vec_audio=[[1.0, 2.0], None, [3.0, 4.0]]))["audio"]
    assert np.isnan(ok[1]).all() and ok[2].tolist() == [3.0, 4.0]
    with pytest.raises(DataError, match=r"column 'vec_audio': precomputed vector of length 3, expected 2(.|\n)*3"):
        precomputed_vectors(base.assign(vec_audio=[[1.0, 2.0], None, [1.0, 2.0, 3.0]]))
    with pytest.raises(DataError, match="item_id 2 has 1 non-finite value"):
        precomputed_vectors(base.assign(vec_audio=[[1.0, 2.0], [np.inf, 1.0], None]))
    with pytest.raises(DataError, match="not a non-empty list of numbers"):
        precomputed_vectors(base.assign(vec_audio=[[1.0, 2.0], "abc", None]))


def test_unknown_encoder_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="encoders.text.model: 'no-such-model'"):
        resolve_text_model("no-such-model")
    assert EncoderConfig().num_threads == 1
