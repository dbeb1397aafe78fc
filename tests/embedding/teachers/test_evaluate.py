"""Next-item evaluation of the teachers, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from embedding.teachers import Vocab, evaluate_next_item
from embedding.teachers.evaluate import NextItemTask, rank_metrics


def test_rank_metrics_by_hand():
    task = NextItemTask(user_ids=np.array([1, 2, 3]), targets=np.array([30, 10, 99]),
                        history=[np.array([10]), np.array([30]), np.array([], dtype=np.int64)],
                        items=Vocab.from_ids([10, 20, 30]), popularity=np.array([3.0, 2.0, 1.0]))
    scores = np.array([[9.0, 1.0, 2.0],     # 10 masked as history -> target 30 ranks 0 (scores 1, 2)
                       [1.0, 5.0, 9.0],     # 30 masked -> target 10 ranks 1 (20 scores higher)
                       [1.0, 2.0, 3.0]])    # unknown target: miss
    m = rank_metrics(scores, task, ks=(1, 2), exclude_history=True, name="m")
    assert m["m/recall@1"] == pytest.approx(1 / 3) and m["m/recall@2"] == pytest.approx(2 / 3)
    assert m["m/ndcg@2"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    m2 = rank_metrics(scores, task, ks=(1,), exclude_history=False, name="m")
    assert m2["m/recall@1"] == 0.0            # without masking, user 1's history item 10 wins
    # dot-product evaluator; item 20 is missing from the export, so it scores -inf and its user misses
    task.targets = np.array([30, 10, 20])
    e = evaluate_next_item(np.eye(3)[[2, 0, 1]], np.array([10, 30]), np.eye(3)[[0, 2]], task, ks=(1,), name="e")
    assert e["e/recall@1"] == pytest.approx(2 / 3)
    e = evaluate_next_item(np.eye(3)[[2, 0, 1]], np.array([10, 20, 30]), np.eye(3), task, ks=(1,), name="e")
    assert e["e/recall@1"] == pytest.approx(1.0)
