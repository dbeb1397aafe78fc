"""The content recipe's pieces on known answers: lambda*, false negatives dropped, Sinkhorn, balancing weights,
hard negatives in the InfoNCE loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedding.balancing import BalanceConfig, balance_weights, sinkhorn, transport_score
from embedding.hard_negatives import choose_threshold, mine_hard_negatives
from embedding.losses import InfoNCELoss


def test_lambda_star_is_the_f1_maximiser_on_a_hand_made_score_set():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    positive = np.array([1, 1, 0, 1, 0, 0, 0], bool)
    # s >= 0.9: P 1, R 1/3, F1 .5; >= .8: P 1, R 2/3, F1 .8; >= .7: P 2/3 R 2/3 F1 .667; >= .6: P 3/4 R 1 F1 .857
    lam, curve = choose_threshold(scores, positive)
    assert lam == pytest.approx(0.6)
    assert curve["f1"].max() == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="positives"):
        choose_threshold(scores, np.zeros(7, bool))


def test_mining_drops_likely_false_negatives_and_keeps_the_next_highest():
    # one query along e0; known positives at angles 0, .05, .15; an unlabelled item at .1 sits among them
    angles = np.array([0.0, 0.05, 0.15, 0.1, 0.6, 0.9, 1.2, 1.5])
    corpus = np.stack([np.cos(angles), np.sin(angles)], 1)
    mined = mine_hard_negatives(np.array([[1.0, 0.0]]), corpus, [np.array([0, 1, 2])], k=2, pool=10)
    # F1 by threshold: cos(0) .5, cos(.05) .8, cos(.1) .667, cos(.15) .857 (3 TP, 1 FP), below that lower
    assert mined.threshold == pytest.approx(np.cos(0.15))
    assert mined.info["dropped"] == 1                                        # the item at .1: a likely false negative
    assert list(mined.negatives[0]) == [4, 5]                                # the highest below lambda*
    assert mined.info["f1"] == pytest.approx(6 / 7)


def test_self_row_is_never_its_own_negative():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    positives = [np.array([(i + 1) % 30]) for i in range(30)]
    mined = mine_hard_negatives(x, x, positives, k=3, self_rows=np.arange(30), pool=10)
    assert not (mined.negatives == np.arange(30)[:, None]).any()
    assert not (mined.negatives == ((np.arange(30) + 1) % 30)[:, None]).any()


def test_sinkhorn_on_a_worked_example():
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    half = np.array([0.5, 0.5])
    p = sinkhorn(cost, half, half, epsilon=1.0)
    # symmetric problem: P = c * K with K = exp(-cost), so p11 = 0.5 / (1 + e^-1)
    assert p[0, 0] == pytest.approx(0.5 / (1 + np.exp(-1)), abs=1e-6)
    assert p.sum(1) == pytest.approx(half) and p.sum(0) == pytest.approx(half)
    sharp = sinkhorn(cost, half, half, epsilon=0.01)                    # near the unregularised plan
    assert sharp == pytest.approx(np.diag(half), abs=1e-6)
    a, b = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    q = sinkhorn(np.array([[0.0, 2.0], [1.0, 0.5]]), a, b, epsilon=0.1)
    assert q.sum(1) == pytest.approx(a) and q.sum(0) == pytest.approx(b)
    with pytest.raises(ValueError, match="marginals"):
        sinkhorn(cost, np.array([0.5, 0.6]), half, 1.0)


def test_balancing_weights_the_set_that_covers_the_validation_samples():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    near = centres[rng.integers(0, 4, 400)] + 0.1 * rng.normal(size=(400, 16))
    far = rng.normal(size=(400, 16))
    valid = centres[rng.integers(0, 4, 300)] + 0.1 * rng.normal(size=(300, 16))
    cfg = BalanceConfig(clusters=4, temperature=0.05)
    assert transport_score(near, valid, cfg) > transport_score(far, valid, cfg)
    weights, table = balance_weights({"near": near, "far": far}, {"v": valid}, cfg)
    assert weights["near"] > 0.9 and sum(weights.values()) == pytest.approx(1.0)
    assert list(table.columns) == ["v", "mean", "weight"]


def test_hard_negatives_enter_the_loss_and_are_masked_by_id():
    torch.manual_seed(0)
    q, t, n = (F.normalize(torch.randn(s, 8), dim=-1) for s in (4, 4, 3))
    labels = torch.tensor([[1, 11], [2, 12], [3, 13], [4, 14]])
    loss = InfoNCELoss(temperature=0.1, learnable=False)
    base = loss.compute_loss_from_embeddings([q, t], labels)
    extra = loss.compute_loss_from_embeddings([q, t, n], labels, negative_ids=torch.tensor([21, 22, 23]))
    assert extra > base                                                  # more negatives, larger loss
    # a "hard negative" that is another row's target id is masked for that row only
    same = loss.compute_loss_from_embeddings([q, t, t[:1]], labels, negative_ids=torch.tensor([11]))
    logits = q @ torch.cat([t, t[:1]]).T / 0.1
    logits[0, 4] = float("-inf")
    assert same == pytest.approx(F.cross_entropy(logits, torch.arange(4)).item(), rel=1e-6)
    with pytest.raises(ValueError, match="negative_ids"):
        loss.compute_loss_from_embeddings([q, t, n], labels)


def test_cosent_follows_the_order_of_the_scores_only():
    from embedding.losses import CoSENTLoss

    loss = CoSENTLoss(scale=20.0)
    a = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), dim=-1)
    b = F.normalize(torch.tensor([[1.0, 0.1], [1.0, 1.0], [0.0, 1.0]]), dim=-1)   # cosines decrease
    agree = loss.compute_loss_from_embeddings([a, b], torch.tensor([0.9, 0.5, 0.1]))
    rescaled = loss.compute_loss_from_embeddings([a, b], torch.tensor([9.0, 5.0, 1.0]))
    reverse = loss.compute_loss_from_embeddings([a, b], torch.tensor([0.1, 0.5, 0.9]))
    assert agree == pytest.approx(rescaled.item()) and agree < 0.1 < reverse
    cos = (a * b).sum(1) * 20
    expect = torch.logsumexp(torch.tensor([0.0, cos[1] - cos[0], cos[2] - cos[0], cos[2] - cos[1]]), 0)
    assert agree == pytest.approx(expect.item(), rel=1e-6)
    ties = loss.compute_loss_from_embeddings([a, b], torch.tensor([0.5, 0.5, 0.5]))
    assert ties == pytest.approx(0.0)                                     # no ordered pair: log(1) = 0


def test_a_dataset_without_negatives_to_mine_is_skipped_with_a_reason():
    import pandas as pd

    from embedding.recipe import MiningConfig, mine_pair_set
    from embedding.tasks import PairSet

    # every query's only candidate target is its positive: nothing to threshold
    ps = PairSet("label", "label", "item", "text", pd.DataFrame({"query": [1, 2], "target": ["a", "a"]}),
                 pd.DataFrame({"query": [], "target": []}))
    vectors = {1: [1.0, 0.0], 2: [0.0, 1.0], "a": [1.0, 1.0]}
    out = mine_pair_set(lambda kind, keys, role, task: np.array([vectors[k] for k in keys]), ps, 1, {1: 0, 2: 1},
                        {"a": 0}, MiningConfig())
    assert isinstance(out, str) and "positives" in out
