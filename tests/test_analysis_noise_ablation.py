"""Noise and ablation robustness (netgrow.analysis.noise / ablation) on a trained toy CNN."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

from analysis_toys import TinyCNN, blob_images, train
from netgrow.analysis import ablate, ablation_robustness, ablation_targets, noise_robustness
from netgrow.analysis.ablation import _units_to_ablate
from netgrow.errors import NetgrowTypeError, NetgrowValueError

K = 4


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model = TinyCNN(K)
    x, y = blob_images(240, K, seed=0, noise=0.3)
    train(model, x, y, steps=40)
    xt, yt = blob_images(400, K, seed=1000, noise=0.3)  # a hard enough set that accuracy is not 1.0
    with torch.no_grad():
        clean = int((model(xt).argmax(1) == yt).sum()) / len(yt)
    return model, xt, yt, clean


def test_toy_accuracy_is_informative(toy):
    _, _, _, clean = toy
    assert 0.6 < clean < 1.0  # exactness tests below would be vacuous at 100 %


# -------------------------------------------------------------------------------------------- noise
def test_sigma_zero_reproduces_clean_accuracy_exactly(toy):
    model, x, y, clean = toy
    rows = noise_robustness(model, (x, y), sigmas=[0.0], draws=3, batch_size=64)
    assert rows[0]["mean"] == clean
    assert rows[0]["accs"] == [clean] * 3 and rows[0]["std"] == 0.0


def test_batches_iterable_gives_the_same_result(toy):
    model, x, y, _ = toy
    batches = list(zip(x.split(64), y.split(64)))
    a = noise_robustness(model, (x, y), [0.0, 0.7], draws=2, batch_size=64)
    b = noise_robustness(model, batches, [0.0, 0.7], draws=2)
    assert [r["accs"] for r in a] == [r["accs"] for r in b]


def test_huge_sigma_falls_to_chance(toy):
    model, x, y, clean = toy
    (row,) = noise_robustness(model, (x, y), [1e4], draws=3)
    # labels are balanced, so a prediction independent of the input scores 1/K in expectation
    assert abs(row["mean"] - 1 / K) < 0.08
    assert clean - row["mean"] > 0.3


def test_noise_lowers_accuracy_and_std_is_sample_std(toy):
    model, x, y, clean = toy
    rows = noise_robustness(model, (x, y), [0.0, 0.5, 3.0], draws=4, seed=3)
    means = [r["mean"] for r in rows]
    assert means[2] < means[0] - 0.2
    assert rows[1]["std"] == pytest.approx(statistics.stdev(rows[1]["accs"]), abs=1e-12)
    assert len(set(rows[2]["accs"])) > 1  # different draws really differ


def test_noise_is_seeded(toy):
    model, x, y, _ = toy
    a = noise_robustness(model, (x, y), [0.8], draws=2, seed=5)
    b = noise_robustness(model, (x, y), [0.8], draws=2, seed=5)
    c = noise_robustness(model, (x, y), [0.8], draws=2, seed=6)
    assert a[0]["accs"] == b[0]["accs"]
    assert a[0]["accs"][1] == c[0]["accs"][0]  # draw d uses seed + d


def test_noise_leaves_the_model_alone(toy):
    model, x, y, _ = toy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        noise_robustness(model, (x, y), [0.5], draws=1)
        assert model.training and all(m.training for m in model.modules())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    finally:
        model.eval()


@pytest.mark.parametrize("sigmas", [[-0.1], [0.0, float("nan")], [float("inf")], []])
def test_bad_sigma(toy, sigmas):
    model, x, y, _ = toy
    with pytest.raises(NetgrowValueError, match="sigmas"):
        noise_robustness(model, (x, y), sigmas)


def test_bad_draws_and_data(toy):
    model, x, y, _ = toy
    with pytest.raises(NetgrowValueError, match="draws must be a positive int"):
        noise_robustness(model, (x, y), [0.1], draws=0)
    with pytest.raises(NetgrowTypeError, match="pair \\(x, y\\)"):
        noise_robustness(model, x, [0.1])
    with pytest.raises(NetgrowValueError, match="x has 400 samples but y has 399 labels"):
        noise_robustness(model, (x, y[:-1]), [0.1])
    with pytest.raises(NetgrowValueError, match="data is empty"):
        noise_robustness(model, [], [0.1])


# ----------------------------------------------------------------------------------------- ablation
def test_targets_prefer_the_batchnorm_after_a_conv(toy):
    model, *_ = toy
    assert ablation_targets(model) == [("features.1", 6), ("features.3", 6)]


def test_fraction_zero_reproduces_clean_accuracy_exactly(toy):
    model, x, y, clean = toy
    rows = ablation_robustness(model, (x, y), [0.0], trials=3, batch_size=64)
    assert rows[0]["accs"] == [clean] * 3
    with ablate(model, 0.0) as chosen, torch.no_grad():
        assert chosen == []
        assert torch.equal(model(x), model(x))


def test_ablated_units_are_silent(toy):
    model, x, _, _ = toy
    seen = {}
    # hooks on the ReLUs after the ablated modules see what the rest of the network sees
    relu1 = model.features[2].register_forward_hook(lambda m, i, o: seen.__setitem__("relu1", o.detach()))
    relu2 = model.features[4].register_forward_hook(lambda m, i, o: seen.__setitem__("relu2", o.detach()))
    try:
        with ablate(model, 0.5, seed=1) as chosen, torch.no_grad():
            model(x[:8])
        names = dict(chosen)
        assert set(names) == {"features.1", "features.3"} and all(len(v) == 3 for v in names.values())
        assert seen["relu1"][:, names["features.1"]].abs().max() == 0  # zeroed after BN: silent after ReLU
        assert seen["relu2"][:, names["features.3"]].abs().max() == 0
        kept = [c for c in range(6) if c not in names["features.1"]]
        assert seen["relu1"][:, kept].abs().max() > 0
    finally:
        relu1.remove()
        relu2.remove()


def test_ablation_sets_are_nested_and_hooks_removed(toy):
    model, x, y, _ = toy
    with ablate(model, 0.3, seed=4) as small:
        pass
    with ablate(model, 0.7, seed=4) as big:
        pass
    for (n1, a), (n2, b) in zip(small, big):
        assert n1 == n2 and set(a) <= set(b)
    assert all(not m._forward_hooks for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ablation_robustness(model, (x, y), [0.5], trials=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())


def test_full_ablation_gives_a_constant_prediction(toy):
    model, x, y, clean = toy
    rows = ablation_robustness(model, (x, y), [0.0, 0.5, 1.0], trials=2)
    # every conv unit zero: the classifier sees zeros, predicts one class; labels are balanced
    assert rows[2]["accs"] == [0.25, 0.25]
    assert rows[0]["mean"] == clean > rows[2]["mean"]


def test_rounding_half_up():
    assert _units_to_ablate(5, 0.5) == 3
    assert _units_to_ablate(6, 0.5) == 3
    assert _units_to_ablate(6, 0.0) == 0
    assert _units_to_ablate(6, 1.0) == 6


@pytest.mark.parametrize("fractions", [[1.5], [-0.1], [0.2, float("nan")]])
def test_bad_fractions(toy, fractions):
    model, x, y, _ = toy
    with pytest.raises(NetgrowValueError, match=r"fractions must be finite and \[0, 1\]"):
        ablation_robustness(model, (x, y), fractions)


def test_bad_trials_and_model_without_conv(toy):
    model, x, y, _ = toy
    with pytest.raises(NetgrowValueError, match="trials must be a positive int"):
        ablation_robustness(model, (x, y), [0.1], trials=0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, K))
    with pytest.raises(NetgrowValueError, match="no Conv layers"):
        ablation_robustness(mlp, (x, y), [0.1])
    with pytest.raises(NetgrowValueError, match="no Conv layers"):
        with ablate(mlp, 0.1):
            pass
