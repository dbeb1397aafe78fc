"""Retrieval evaluators on a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from embedding.evaluate import RetrievalEvaluator, VectorEmbedder, exact_search


def test_retrieval_evaluator_known_answer():
    corpus = np.eye(4, dtype=np.float32)  # items 10..13
    corpus_keys = [10, 11, 12, 13]
    # query item 10 has relevant item 11; query item 12 has relevant 13
    ev = RetrievalEvaluator("i2i", "item", [10, 12], "item", corpus_keys,
                            [np.array([1]), np.array([3])], task="i2i", ks=(1, 3), exclude_self=True)
    item_vecs = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0], [1, 0, -0.5, 0]], np.float32)
    # query 10 (itself excluded): 11 (cos .99) then 13 (.89) -> hit@1; query 12: 10, 11 (cos 0) before 13 (< 0)
    m = ev.score(item_vecs[[0, 2]], item_vecs)
    assert m["i2i/recall@1"] == pytest.approx(0.5) and m["i2i/recall@3"] == pytest.approx(1.0)
    assert ev.primary_metric == "i2i/recall@1" and ev.greater_is_better
    m2 = ev(VectorEmbedder(np.array(corpus_keys), item_vecs))
    assert m2 == m
    scores, idx = exact_search(corpus[:1], corpus, 2)
    assert idx[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0)


def test_per_query_table_and_paired_interval():
    from embedding.evaluate import compare_query_tables, paired_interval, query_frame, summarize

    a = query_frame("i2i", ["1", "2", "3", "4"], {"recall@10": np.array([1.0, 0.0, 1.0, 1.0])}, "recall@10")
    b = query_frame("i2i", ["1", "2", "3", "5"], {"recall@10": np.array([0.0, 0.0, 1.0, 0.0])}, "recall@10")
    assert summarize(a) == {"i2i/recall@10": 0.75, "i2i/n_queries": 4.0}
    out = compare_query_tables(a, b, "d/")                       # paired over the 3 shared queries only
    assert out["d/i2i/recall@10"] == pytest.approx(1 / 3) and out["d/i2i/recall@10_n"] == 3
    assert 0.0 <= out["d/i2i/recall@10_lo"] <= 1 / 3 <= out["d/i2i/recall@10_hi"] <= 1.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    d, lo, hi = paired_interval(x + 0.5, x)                      # a constant shift: no spread
    assert d == lo == hi == pytest.approx(0.5)
    d, lo, hi = paired_interval(x + rng.normal(0.2, 1.0, 400), x, seed=1)
    assert lo < d < hi and lo > 0.0 and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
