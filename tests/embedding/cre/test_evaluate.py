"""The CRE evaluators on known answers, and their assembly from a dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedding.cre.evaluate import (
    BijectiveAlignmentEvaluator,
    ClusterNMIEvaluator,
    CREEvalConfig,
    ItemSpace,
    NeighbourAgreementEvaluator,
    Seq2ItemEvaluator,
    bijective_alignment,
    build_cre_evaluators,
    run_cre_evaluators,
)
from embedding.cre.sequences import SequenceSet


def test_evaluators_known_answers():
    rng = np.random.default_rng(0)
    ids = np.arange(60, dtype=np.int64) + 10
    labels = np.repeat(np.arange(4), 15)
    onehot = np.eye(4)[labels] + 0.01 * rng.normal(size=(60, 4))
    nmi = ClusterNMIEvaluator(pd.Series([f"c{x}" for x in labels], index=ids))
    assert nmi(ItemSpace(ids, onehot))["nmi/category"] == pytest.approx(1.0)
    assert nmi(ItemSpace(ids, rng.normal(size=(60, 4))))["nmi/category"] < 0.3
    vec = rng.normal(size=(60, 12)).astype(np.float32)
    same = NeighbourAgreementEvaluator("t", ids, vec / np.linalg.norm(vec, axis=1, keepdims=True), k=10)
    m = same(ItemSpace(ids, vec))
    assert m["teacher_t/top10_overlap"] == 1.0 and m["teacher_t/kendall_tau"] == pytest.approx(1.0)
    other = same(ItemSpace(ids, rng.normal(size=(60, 12))))
    assert other["teacher_t/top10_overlap"] < 0.5 and abs(other["teacher_t/kendall_tau"]) < 0.5
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    assert bijective_alignment(unit, unit) == {"bijective": 1.0, "top1": 1.0}
    assert bijective_alignment(unit, unit[::-1].copy())["top1"] < 0.1
    head = BijectiveAlignmentEvaluator("t", ids, unit, "head")
    assert head(ItemSpace(ids, rng.normal(size=(60, 5)), {"t": unit}))["align_t/bijective"] == 1.0
    assert head(ItemSpace(ids, unit)) == {}  # no projection for this teacher: skipped
    probe = BijectiveAlignmentEvaluator("t", ids, unit, "probe", ridge=1e-6)
    assert probe(ItemSpace(ids, unit @ rng.normal(size=(12, 12))))["probe_t/bijective"] == 1.0  # linear map
    # seq2item: the target is the direction of the history mean -> found at rank 1; orthogonal -> never
    basis = np.eye(60, dtype=np.float32)
    v = basis.copy()
    v[0] = (basis[1] + basis[2] + basis[3]) / np.sqrt(3)  # item 10 = mean of items 11, 12, 13
    seqs = SequenceSet("vanilla", np.array([1]), np.array([[11, 12, 13, -1]]), np.array([10]))
    ev = Seq2ItemEvaluator("s", seqs, (1, 10))
    assert ev(ItemSpace(ids, v)) == {"s/n_queries": 1.0, "s/recall@1": 1.0, "s/recall@10": 1.0}
    assert ev(ItemSpace(ids, basis))["s/recall@10"] < 1.0  # all ties at 0: not reliably found
    far = SequenceSet("vanilla", np.array([1]), np.array([[11, 12, 13, -1]]), np.array([50]))
    assert Seq2ItemEvaluator("s", far, (1,))(ItemSpace(ids, v))["s/recall@1"] == 0.0


def test_build_evaluators_without_filter_vectors(cre_world):
    ds, enc, teacher = cre_world.ds, cre_world.enc, cre_world.teacher
    evs = build_cre_evaluators(ds, enc.item_ids, {"fake": teacher}, CREEvalConfig(max_queries=50))
    names = [getattr(e, "name", "") for e in evs]
    assert "seq2item_vanilla" in names and "seq2item_filtered" not in names
    m = run_cre_evaluators(evs, ItemSpace(enc.item_ids, enc.pooled_text), prefix="text/")
    assert m["text/seq2item_vanilla/n_queries"] == 50 and m["text/nmi/category"] > 0.9  # category shows in text
