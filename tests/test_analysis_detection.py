"""No-decision detection (netgrow.analysis.detection): rules, buckets, TNR/FNR, tnr_at_fnr."""

from __future__ import annotations

import math

import pytest
import torch

from netgrow.analysis import (
    decision_buckets,
    detection_curve,
    mi_scores,
    no_decision_buckets,
    standard_scores,
    tnr_at_fnr,
)
from netgrow.errors import NetgrowTypeError, NetgrowValueError

P = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
Y = torch.tensor([0, 1, 1, 0])  # predictions 0, 0, 1, 1: right, wrong, right, wrong


def _buckets(rows):
    return [(r["correct"], r["no_decision"], r["wrong"]) for r in rows]


def test_standard_rule_by_hand():
    rows = no_decision_buckets(P, Y, [0.0, 0.5, 0.58, 0.65, 0.8, 1.0])
    assert _buckets(rows) == [(2, 0, 2), (2, 0, 2), (2, 1, 1), (2, 2, 0), (1, 3, 0), (0, 4, 0)]
    # negatives: the 2 inputs classified correctly; positives: the 2 misclassified ones
    assert [(r["tnr"], r["fnr"]) for r in rows] == [(1.0, 1.0), (1.0, 1.0), (1.0, 0.5), (1.0, 0.0), (0.5, 0.0),
                                                    (0.0, 0.0)]


def test_mi_rule_by_hand():
    # model 1 knows 2 classes, model 2 three; the MI confidence is the smaller of the two maxima
    p1 = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    p2 = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9], [0.1, 0.85, 0.05]])
    pred, conf = mi_scores([p1, p2])
    assert pred.tolist() == [0, 2, 1]  # rows 1 and 2: 1-1 ties, the later model decides
    assert torch.allclose(conf, torch.tensor([0.7, 0.6, 0.8], dtype=conf.dtype))
    y = torch.tensor([0, 0, 1])
    rows = no_decision_buckets([p1, p2], y, [0.0, 0.65, 0.75, 0.85], rule="mi")
    # row 1 is wrong; the early model is unsure there (0.6), so MI withholds it from δ = 0.6 on
    assert _buckets(rows) == [(2, 0, 1), (2, 1, 0), (1, 2, 0), (0, 3, 0)]
    # the standard rule on the final model alone keeps the wrong answer: its confidence on row 1 is 0.9
    std = no_decision_buckets(p2, y, [0.65, 0.75, 0.87])
    assert _buckets(std) == [(2, 0, 1), (1, 1, 1), (0, 2, 1)]


def test_mi_rule_with_deferring_models():
    p1 = torch.tensor([[0.6, 0.4], [0.55, 0.45]])
    p2 = torch.tensor([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    # row 0: the final model says class 2, unknown to model 1, which defers: only 0.8 counts
    # row 1: both vote; the confidence is min(0.55, 0.7)
    pred, conf = mi_scores([p1, p2], defer_unknown=True)
    assert pred.tolist() == [2, 0]
    assert torch.allclose(conf, torch.tensor([0.8, 0.55], dtype=conf.dtype))
    _, conf_all = mi_scores([p1, p2])
    assert torch.allclose(conf_all, torch.tensor([0.6, 0.55], dtype=conf.dtype))  # everyone asked on row 0
    rows = no_decision_buckets([p1, p2], torch.tensor([2, 1]), [0.65], rule="mi", defer_unknown=True)
    assert _buckets(rows) == [(1, 1, 0)]
    rows = no_decision_buckets([p1, p2], torch.tensor([2, 1]), [0.65], rule="mi")
    assert _buckets(rows) == [(0, 2, 0)]


@pytest.mark.parametrize("rule", ["standard", "mi"])
def test_thresholds_zero_and_one_with_saturated_softmax(rule):
    p = torch.eye(3)[[0, 1, 2, 0]]  # confidence exactly 1.0
    y = torch.tensor([0, 1, 0, 0])
    probs = p if rule == "standard" else [p[:, :2].softmax(1), p]
    rows = no_decision_buckets(probs, y, [0.0, 1.0], rule=rule)
    assert rows[0]["no_decision"] == 0 and rows[0]["correct"] + rows[0]["wrong"] == 4
    assert _buckets(rows[1:]) == [(0, 4, 0)]


def test_buckets_always_sum_to_n():
    gen = torch.Generator().manual_seed(0)
    thresholds = [i / 50 for i in range(51)]
    for trial in range(5):
        n = 37 + trial
        probs = [torch.randn(n, k, generator=gen).mul(3).softmax(1) for k in (2, 4, 5)]
        y = torch.randint(0, 5, (n,), generator=gen)
        for rows in (no_decision_buckets(probs[-1], y, thresholds),
                     no_decision_buckets(probs, y, thresholds, rule="mi", weights=[1, 2, 3])):
            assert all(r["correct"] + r["no_decision"] + r["wrong"] == n for r in rows)
            correct = [r["correct"] for r in rows]
            assert correct == sorted(correct, reverse=True)  # raising δ only removes decisions


def test_curve_is_exact_and_matches_the_buckets():
    gen = torch.Generator().manual_seed(1)
    p = torch.randn(200, 4, generator=gen).mul(2).softmax(1)
    y = torch.randint(0, 4, (200,), generator=gen)
    pred, conf = standard_scores(p)
    curve = detection_curve(pred, conf, y)
    assert (curve["fnr"][0], curve["tnr"][0]) == (1.0, 1.0)
    assert (curve["fnr"][-1], curve["tnr"][-1]) == (0.0, 0.0)
    assert all(a >= b for a, b in zip(curve["fnr"], curve["fnr"][1:]))
    assert all(a >= b for a, b in zip(curve["tnr"], curve["tnr"][1:]))
    rows = decision_buckets(pred, conf, y, curve["threshold"][::17])
    assert [r["fnr"] for r in rows] == curve["fnr"][::17]
    assert [r["tnr"] for r in rows] == curve["tnr"][::17]


def test_tnr_at_fnr():
    assert tnr_at_fnr([1.0, 0.5, 0.04, 0.0], [1.0, 0.9, 0.6, 0.0], 0.05) == 0.6
    assert tnr_at_fnr([1.0, 0.5, 0.06], [1.0, 0.9, 0.6], 0.05) == 0.0  # only the all-no-decision detector
    assert tnr_at_fnr([1.0, 0.05, 0.0], [1.0, 0.7, 0.1], 0.05) == 0.7  # the target itself is allowed
    assert math.isnan(tnr_at_fnr([float("nan")] * 2, [1.0, 0.0], 0.05))  # no positives: undefined
    pred, conf = standard_scores(P)
    c = detection_curve(pred, conf, Y)
    assert tnr_at_fnr(c["fnr"], c["tnr"], 0.0) == 1.0  # δ between 0.6 and 0.7 keeps both right answers only


def test_rates_are_nan_without_positives():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    rows = no_decision_buckets(p, torch.tensor([0, 1]), [0.5])
    assert rows[0]["tnr"] == 1.0 and math.isnan(rows[0]["fnr"])


@pytest.mark.parametrize("thresholds", [[-0.1], [0.5, 1.5], [float("nan")], []])
def test_bad_thresholds(thresholds):
    with pytest.raises(NetgrowValueError, match="threshold"):
        no_decision_buckets(P, Y, thresholds)


def test_bad_inputs():
    with pytest.raises(NetgrowValueError, match="look like logits"):
        no_decision_buckets(P * 10, Y, [0.5])
    with pytest.raises(NetgrowValueError, match="look like logits"):
        no_decision_buckets([P, torch.randn(4, 3)], Y, [0.5], rule="mi")
    with pytest.raises(NetgrowValueError, match="unknown rule 'vote'"):
        no_decision_buckets(P, Y, [0.5], rule="vote")
    with pytest.raises(NetgrowTypeError, match="needs one \\(N, K\\) tensor"):
        no_decision_buckets([P], Y, [0.5])
    with pytest.raises(NetgrowValueError, match="4 predictions but 3 labels"):
        no_decision_buckets(P, Y[:3], [0.5])
    with pytest.raises(NetgrowValueError, match="numbers of rows differ"):
        no_decision_buckets([P, P[:3]], Y, [0.5], rule="mi")
    with pytest.raises(NetgrowValueError, match="target FNR must be in \\[0, 1\\]"):
        tnr_at_fnr([0.1], [0.2], 1.5)
    with pytest.raises(NetgrowValueError, match="same length"):
        tnr_at_fnr([0.1, 0.2], [0.2], 0.05)
