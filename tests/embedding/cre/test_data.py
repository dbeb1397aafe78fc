"""CRE's training data: teacher tables checked, aux pairs without evaluation targets, rows aligned to items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from embedding.cre.data import aux_i2i_pairs, build_cre_data, teacher_matrix
from embedding.cre.sequences import seq2item_events
from embedding.tasks import PairConfig, build_i2i_pairs
from recsys.data.dataset import Dataset


def test_aux_pairs_never_see_evaluation_targets(cre_world):
    ds = cre_world.ds
    _, targets = seq2item_events(ds)
    # a user whose last train positive is an item nobody else engages: it forms pairs only with that user's
    # previous items, so it is in the content trainer's pairs but must not be in the CRE aux pairs
    unique_item = int(ds.items["item_id"].iloc[0])
    others = ds.interactions.loc[ds.interactions["item_id"] != unique_item]
    t = ds.split.train_end - pd.Timedelta(days=1)
    extra = pd.DataFrame({"user_id": 777, "item_id": [5001, 5002, unique_item],
                          "timestamp": [t, t + pd.Timedelta(hours=1), t + pd.Timedelta(hours=2)],
                          "like": np.float32(1.0)})
    ds2 = Dataset(ds.manifest, ds.items, pd.concat([others, extra], ignore_index=True).sort_values("timestamp"))
    cfg = PairConfig(holdout_fraction=0.0)
    full = build_i2i_pairs(ds2, cfg).train
    assert ((full["query"] == unique_item) | (full["target"] == unique_item)).any()
    pairs, held = aux_i2i_pairs(ds2, seq2item_events(ds2)[1], cfg)
    assert len(pairs) and not ((pairs["query"] == unique_item) | (pairs["target"] == unique_item)).any()
    # items held out by the content stage's i2i split are in no aux pair
    pairs, held = aux_i2i_pairs(ds, targets, PairConfig(holdout_fraction=0.2))
    assert held and not (pairs["query"].isin(held) | pairs["target"].isin(held)).any()


def test_teacher_matrix_checks_the_table():
    ids, vec = teacher_matrix(pd.DataFrame({"item_id": [3, 1], "embedding": [np.array([3.0, 4.0]), np.ones(2)]}))
    assert ids.tolist() == [3, 1] and np.allclose(vec[0], [0.6, 0.8]) and np.allclose(np.linalg.norm(vec, axis=1), 1)
    with pytest.raises(ValueError, match="duplicate item_id 1"):
        teacher_matrix(pd.DataFrame({"item_id": [1, 1], "embedding": [np.ones(2), np.ones(2)]}))
    with pytest.raises(ValueError, match="item_id 2 has dimension 3"):
        teacher_matrix(pd.DataFrame({"item_id": [1, 2], "embedding": [np.ones(2), np.ones(3)]}), "t")
    with pytest.raises(ValueError, match="'t': item_id 2 has a non-finite or zero vector"):
        teacher_matrix(pd.DataFrame({"item_id": [1, 2], "embedding": [np.ones(2), np.zeros(2)]}), "t")
    with pytest.raises(ValueError, match="lacks columns"):
        teacher_matrix(pd.DataFrame({"item_id": [1]}))


def test_cre_data_rows_follow_the_encoded_items(cre_world, tiny_cre):
    """Sequences, teacher vectors and distillation rows are positions in the encoded items; the cold items (no
    teacher vector, in no sequence) are counted."""
    ds, enc, teacher = cre_world.ds, cre_world.enc, cre_world.teacher
    ids, vec = teacher_matrix(teacher, "fake")
    history, targets = seq2item_events(ds)
    base = np.random.default_rng(0).normal(size=(len(enc), 8)).astype(np.float32)
    data = build_cre_data(ds, enc.item_ids, base, {"fake": (ids, vec)}, history, targets,
                          tiny_cre(aux_i2i_weight=0.5), torch.device("cpu"))
    rows = pd.Index(enc.item_ids).get_indexer(ids)
    assert np.array_equal(np.flatnonzero(data.teachers["fake"].in_vocab), np.sort(rows))
    np.testing.assert_allclose(data.teachers["fake"].vectors[torch.as_tensor(rows)].numpy(), vec)
    assert np.array_equal(data.distill_rows, np.sort(rows)) and data.info["cold_items"] == cre_world.n_cold
    for kind, seqs in data.sequences.items():
        assert (seqs.history < len(enc)).all() and (seqs.target >= 0).all(), kind
        assert set(enc.item_ids[seqs.target]) <= set(history["item_id"])  # targets are history events only
    q, t = data.aux_pairs
    assert len(q) == len(t) == data.info["aux_pairs"] > 0
    off = build_cre_data(ds, enc.item_ids, base, {"fake": (ids, vec)}, history, targets, tiny_cre(),
                         torch.device("cpu"))
    assert off.aux_pairs is None and off.info["aux_pairs"] == 0
    with pytest.raises(ValueError, match="filter_by='nope'"):
        build_cre_data(ds, enc.item_ids, base, {"fake": (ids, vec)}, history, targets, tiny_cre(filter_by="nope"),
                       torch.device("cpu"))
