"""Teacher data: the id vocabulary (unknown = 0) and the leave-last-out holdout inside the train period."""

from __future__ import annotations

from embedding.teachers import Vocab
from embedding.teachers.data import teacher_data


def test_vocab_unknown_is_zero():
    v = Vocab.from_ids([30, 10, 20, 10])
    assert v.num_embeddings == 4
    assert v.lookup([10, 20, 30, 15, 99, 0]).tolist() == [1, 2, 3, 0, 0, 0]
    assert Vocab.from_ids([]).lookup([1]).tolist() == [0]


def test_holdout_excludes_targets(teacher_world):
    data = teacher_data(teacher_world, holdout_last=True)
    assert len(data.fit) == len(data.positives) - len(data.targets)
    fit_keys = set(map(tuple, data.fit[["user_id", "item_id", "timestamp"]].astype(str).to_numpy()))
    last = data.targets[["user_id", "item_id", "timestamp"]].astype(str).to_numpy()
    assert not any(tuple(r) in fit_keys for r in last)
    assert (data.positives["timestamp"] < teacher_world.split.train_end).all()
