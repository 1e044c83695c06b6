"""Mutual inference (netgrow.analysis.mutual): the vote, the weights, the threat model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from analysis_toys import TinyCNN, blob_images, train
from netgrow.analysis import (
    adversarial_stage_probs,
    fgsm,
    mutual_fgsm,
    mutual_inference,
    mutual_vote,
    resolve_weights,
    soft_vote,
    stage_probs,
)
from netgrow.errors import NetgrowTypeError, NetgrowValueError


def _onehot_votes(votes: list[int], k: int) -> torch.Tensor:
    """Probabilities whose argmax is ``votes[i]`` in row i (0.7 on the vote, the rest spread)."""
    p = torch.full((len(votes), k), 0.3 / max(k - 1, 1))
    p[torch.arange(len(votes)), torch.tensor(votes)] = 0.7
    return p if k > 1 else torch.ones(len(votes), 1)


# Three stage models knowing 2, 3 and 4 classes; rows are the cases worked out by hand below.
VOTES = {
    "m1": [0, 1, 0, 0, 0],  # K=2
    "m2": [2, 1, 1, 0, 0],  # K=3
    "m3": [2, 3, 3, 3, 1],  # K=4
}


@pytest.fixture
def probs():
    return [_onehot_votes(VOTES["m1"], 2), _onehot_votes(VOTES["m2"], 3), _onehot_votes(VOTES["m3"], 4)]


def test_equal_weights_by_hand(probs):
    # row 0: 0 | 2 | 2 -> 2 (a class only the later stages know wins 2:1)
    # row 1: 1 | 1 | 3 -> 1 (majority)
    # row 2: 0 | 1 | 3 -> three-way tie -> the latest model decides: 3
    # row 3: 0 | 0 | 3 -> 0
    # row 4: 0 | 0 | 1 -> 0
    assert mutual_vote(probs).tolist() == [2, 1, 3, 0, 0]
    assert mutual_vote(probs, weights=[1, 1, 1]).tolist() == [2, 1, 3, 0, 0]


def test_weighted_votes_by_hand(probs):
    # weights 1, 1, 3: the final model outvotes two agreeing early models
    assert mutual_vote(probs, weights=[1.0, 1.0, 3.0]).tolist() == [2, 3, 3, 3, 1]
    # weights 2, 1, 1: row 0 is 0 (2) vs 2 (1 + 1): a tie, the latest model voting a tied class (m3: 2) wins
    # row 2: 0 (2) vs 1 (1) vs 3 (1) -> 0; row 1: 1 (2 + 1) -> 1
    assert mutual_vote(probs, weights=[2.0, 1.0, 1.0]).tolist() == [2, 1, 0, 0, 0]
    # a zero-weight model never decides a tie: rows 0 (0 vs 2) and 2 (0 vs 1) go to m2, the latest model
    # with weight, not to m3; row 4 (m3 says 1 with weight 0): 0
    assert mutual_vote(probs, weights=[1.0, 1.0, 0.0]).tolist() == [2, 1, 1, 0, 0]


def test_defer_unknown_by_hand(probs):
    # the final model's answers are 2, 3, 3, 3, 1; m1 (classes 0-1) votes only on row 4, m2 (0-2) on rows 0 and 4
    # row 0: m2 2 | m3 2 -> 2; rows 1-3: m3 alone -> 3; row 4: m1 0 | m2 0 | m3 1 -> 0
    assert mutual_vote(probs, defer_unknown=True).tolist() == [2, 3, 3, 3, 0]
    # with a zero weight the final model still decides the rows nobody else votes on
    assert mutual_vote(probs, weights=[1.0, 1.0, 0.0], defer_unknown=True).tolist() == [2, 3, 3, 3, 0]
    single = _onehot_votes([1, 0, 3], 4)
    assert torch.equal(mutual_vote([single], defer_unknown=True), single.argmax(1))


def test_soft_vote_by_hand():
    p1 = torch.tensor([[0.8, 0.2], [0.6, 0.4]])
    p2 = torch.tensor([[0.1, 0.3, 0.6], [0.5, 0.1, 0.4]])
    # weights 3:1 (e.g. validation accuracies 0.9 and 0.3) -> 0.75 / 0.25
    # row 0: class 0 = 0.75*0.8 + 0.25*0.1 = 0.625, class 1 = 0.15 + 0.075 = 0.225, class 2 = 0.15
    # row 1: class 0 = 0.45 + 0.125 = 0.575, class 1 = 0.3 + 0.025 = 0.325, class 2 = 0.1
    labels, conf = soft_vote([p1, p2], weights=[0.9, 0.3])
    assert labels.tolist() == [0, 0] and conf.tolist() == pytest.approx([0.625, 0.575])
    # equal weights: row 0: (0.8 + 0.1) / 2 = 0.45 vs class 2: 0.3 -> 0; with weights 1:3, class 2 wins (0.45)
    assert soft_vote([p1, p2])[0].tolist() == [0, 0]
    labels, conf = soft_vote([p1, p2], weights=[1.0, 3.0])
    assert labels.tolist() == [2, 0] and conf.tolist() == pytest.approx([0.45, 0.525])
    with pytest.raises(NetgrowValueError):
        soft_vote([p1, p2], weights=[0.0, 0.0])


def test_float_weight_sums_tie_as_they_should():
    p1, p2, p3 = _onehot_votes([0], 2), _onehot_votes([0], 3), _onehot_votes([1], 4)
    # 0.1 + 0.2 != 0.3 in floating point, but it is a tie: the latest model decides
    assert mutual_vote([p1, p2, p3], weights=[0.1, 0.2, 0.3]).tolist() == [1]
    assert mutual_vote([p1, p2, p3], weights=[0.1, 0.2, 0.29]).tolist() == [0]


def test_single_model_is_its_argmax():
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(50, 5, generator=gen).softmax(1)
    assert torch.equal(mutual_vote([p]), p.argmax(1))
    logits = torch.randn(50, 5, generator=gen)  # only the argmax is used: logits work as well
    assert torch.equal(mutual_vote([logits]), logits.argmax(1))


@pytest.fixture(scope="module")
def stages():
    """Three toy CNNs trained on the first 2, 3 and 4 classes (a cumulative run in miniature)."""
    models = []
    for i, k in enumerate((2, 3, 4)):
        torch.manual_seed(i)
        m = TinyCNN(k)
        x, y = blob_images(60 * k, k, seed=10 + i, noise=0.3)
        models.append(train(m, x, y, steps=30, seed=i))
    xt, yt = blob_images(200, 4, seed=99, noise=0.3)
    return models, xt, yt


def test_mi_with_one_model_equals_the_model(stages):
    models, x, y = stages
    res = mutual_inference(models[-1:], (x, y), batch_size=64)
    with torch.no_grad():
        pred = models[-1](x).argmax(1)
    assert torch.equal(res["labels"], pred)
    assert res["accuracy"] == res["final_accuracy"] == int((pred == y).sum()) / len(y)


def test_mi_on_stage_models(stages):
    models, x, y = stages
    probs, ys = stage_probs(models, (x, y), batch_size=64)
    assert [p.shape for p in probs] == [(200, 2), (200, 3), (200, 4)] and torch.equal(ys, y)
    assert torch.allclose(probs[0].sum(1), torch.ones(200))
    res = mutual_inference(models, (x, y), weights=[0.5, 1.0, 2.0])
    assert torch.equal(res["labels"], mutual_vote(probs, [0.5, 1.0, 2.0]))
    assert res["accuracy"] == int((res["labels"] == y).sum()) / len(y)
    defer = mutual_inference(models, (x, y), defer_unknown=True)
    assert torch.equal(defer["labels"], mutual_vote(probs, defer_unknown=True))
    # deferring never lets early models outvote the final model on classes they never saw
    new = probs[-1].argmax(1) >= 3
    assert torch.equal(defer["labels"][new], probs[-1].argmax(1)[new])
    val = mutual_inference(models, (x, y), weights="val_acc", val_accs=[0.9, 0.8, 0.7])
    assert val["weights"] == [0.9, 0.8, 0.7]


def test_threat_model_attacks_the_final_model_only(stages):
    models, x, y = stages
    eps = 0.1
    probs, _ = adversarial_stage_probs(models, (x, y), eps, clip=None, batch_size=64)
    x_adv = fgsm(models[-1], x, y, eps, clip=None)
    with torch.no_grad():
        for m, p in zip(models, probs):
            assert torch.allclose(p, F.softmax(m(x_adv), 1), atol=1e-6)
    rows = mutual_fgsm(models, (x, y), [0.0, eps], clip=None)
    clean = mutual_inference(models, (x, y))
    assert rows[0]["mi_accuracy"] == clean["accuracy"] and rows[0]["final_accuracy"] == clean["final_accuracy"]
    assert rows[1]["mi_accuracy"] == int((mutual_vote(probs) == y).sum()) / len(y)
    assert rows[1]["final_accuracy"] < rows[0]["final_accuracy"]


def test_resolve_weights():
    assert resolve_weights("equal", 3) == [1.0, 1.0, 1.0]
    assert resolve_weights(None, 2) == [1.0, 1.0]
    assert resolve_weights([1, 2], 2) == [1.0, 2.0]
    with pytest.raises(NetgrowValueError, match="unknown weights 'best'"):
        resolve_weights("best", 2)
    with pytest.raises(NetgrowValueError, match="needs one validation accuracy per model"):
        resolve_weights("val_acc", 2, val_accs=[0.5])
    with pytest.raises(NetgrowValueError, match="got 3 weights for 2 models"):
        resolve_weights([1, 1, 1], 2)
    with pytest.raises(NetgrowValueError, match="not all zero"):
        resolve_weights([0, 0], 2)
    with pytest.raises(NetgrowValueError, match=">= 0"):
        resolve_weights([1, -1], 2)


def test_bad_probs(probs):
    with pytest.raises(NetgrowValueError, match=r"numbers of rows differ: N = \[5, 4\]"):
        mutual_vote([probs[0], probs[1][:4]])
    with pytest.raises(NetgrowValueError, match=r"K_i non-decreasing .* got K = \[3, 2\]"):
        mutual_vote([probs[1], probs[0]])
    with pytest.raises(NetgrowValueError, match="probs is empty"):
        mutual_vote([])
    with pytest.raises(NetgrowTypeError, match="for a single model pass \\[probs\\]"):
        mutual_vote(probs[0])
    with pytest.raises(NetgrowValueError, match="floating \\(N, K_i\\) tensor"):
        mutual_vote([torch.ones(5)])
    with pytest.raises(NetgrowValueError, match="NaN or inf"):
        mutual_vote([torch.full((2, 2), float("nan"))])
    with pytest.raises(NetgrowValueError, match="got 2 weights for 3 models"):
        mutual_vote(probs, weights=[1, 1])
    with pytest.raises(NetgrowTypeError, match="non-empty list of stage models"):
        stage_probs(torch.nn.Linear(2, 2), (torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)))
