"""FGSM (netgrow.analysis.fgsm), cross-checked against the Adversarial Robustness Toolbox."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis_toys import TinyCNN, blob_images, train
from netgrow.analysis import Normalized, fgsm, fgsm_accuracy, normalized_bounds
from netgrow.errors import NetgrowTypeError, NetgrowValueError

K = 4


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(1)
    model = TinyCNN(K)
    x, y = blob_images(240, K, seed=1, noise=0.2)
    train(model, x, y, steps=40)
    xt, yt = blob_images(200, K, seed=2000, noise=0.2)  # raw scale: values in [0.2, 0.8]
    return model, xt, yt


def _acc(model, x, y):
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum()) / len(y)


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.35])
def test_same_examples_as_art(toy, eps):
    art_fgm = pytest.importorskip("art.attacks.evasion")
    art_est = pytest.importorskip("art.estimators.classification")
    model, x, y = toy
    clf = art_est.PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                                    nb_classes=K, clip_values=(0.0, 1.0), device_type="cpu")
    attack = art_fgm.FastGradientMethod(estimator=clf, norm=np.inf, eps=eps, batch_size=len(y))
    x_art = torch.from_numpy(attack.generate(x.numpy(), y=y.numpy()))
    x_ours = fgsm(model, x, y, eps, clip=(0.0, 1.0))
    assert (x_ours - x).abs().max() > 0  # the attack did something
    assert torch.allclose(x_ours, x_art, rtol=0, atol=1e-6)
    if eps == 0.35:  # large enough that clipping to [0, 1] is active
        assert bool((x_ours == 1.0).any() or (x_ours == 0.0).any())


def test_eps_zero_is_clean(toy):
    model, x, y = toy
    assert torch.equal(fgsm(model, x, y, 0.0), x)
    rows = fgsm_accuracy(model, (x, y), [0.0, 0.05, 0.3], batch_size=64)
    assert rows[0] == {"eps": 0.0, "accuracy": _acc(model, x, y)}
    assert rows[2]["accuracy"] < rows[0]["accuracy"] - 0.3


def test_linf_norm_is_eps_before_clipping(toy):
    model, x, y = toy
    eps = 0.05  # inputs lie in [0.2, 0.8]: no clipping at [0, 1]
    x_adv = fgsm(model, x, y, eps, clip=None)
    step = (x_adv - x).abs()
    assert step.max().item() == pytest.approx(eps, abs=1e-7)
    on = step > 0
    assert on.float().mean() > 0.9  # almost every pixel has a non-zero gradient
    assert torch.allclose(step[on], torch.full_like(step[on], eps), atol=1e-7)
    assert torch.equal(fgsm(model, x, y, eps, clip=(0.0, 1.0)), x_adv)


def test_clipping_is_applied(toy):
    model, x, y = toy
    unclipped = fgsm(model, x, y, 0.5, clip=None)
    assert unclipped.min() < 0 and unclipped.max() > 1
    clipped = fgsm(model, x, y, 0.5, clip=(0.0, 1.0))
    assert torch.equal(clipped, unclipped.clamp(0.0, 1.0))
    lo, hi = torch.full((1, 1, 1), 0.1), torch.full((1, 1, 1), 0.9)  # tensor bounds broadcast per channel
    assert torch.equal(fgsm(model, x, y, 0.5, clip=(lo, hi)), unclipped.clamp(0.1, 0.9))


def test_normalised_inputs_with_normalised_bounds_match_a_raw_attack(toy):
    model, u, y = toy  # `model` is treated as the net behind a normalisation layer
    mean, std = [0.45], [0.2]
    raw_model = Normalized(model, mean, std)
    eps_raw = 0.1
    u_adv = fgsm(raw_model, u, y, eps_raw, clip=(0.0, 1.0))
    x = (u - mean[0]) / std[0]
    x_adv = fgsm(model, x, y, eps_raw / std[0], clip=normalized_bounds(mean, std))
    assert torch.allclose(x_adv * std[0] + mean[0], u_adv, atol=1e-5)
    lo, hi = normalized_bounds(mean, std)
    assert float(lo) == pytest.approx(-2.25) and float(hi) == pytest.approx(2.75)


def test_model_state_is_untouched(toy):
    model, x, y = toy
    model.zero_grad(set_to_none=True)
    model.train()
    try:
        fgsm(model, x, y, 0.1)
        assert model.training and all(m.training for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_examples_do_not_depend_on_the_batch_size(toy):
    model, x, y = toy
    whole = fgsm(model, x, y, 0.07)
    parts = torch.cat([fgsm(model, a, b, 0.07) for a, b in zip(x.split(7), y.split(7))])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("eps", [-0.01, float("nan"), float("inf")])
def test_bad_eps(toy, eps):
    model, x, y = toy
    with pytest.raises(NetgrowValueError, match="eps must be finite and >= 0"):
        fgsm(model, x, y, eps)


def test_bad_arguments(toy):
    model, x, y = toy
    with pytest.raises(NetgrowTypeError, match="eps must be a number"):
        fgsm(model, x, y, "0.1")
    with pytest.raises(NetgrowValueError, match="clip low must be <= high"):
        fgsm(model, x, y, 0.1, clip=(1.0, 0.0))
    with pytest.raises(NetgrowTypeError, match="clip must be None or a \\(low, high\\) pair"):
        fgsm(model, x, y, 0.1, clip=(0.0, 0.5, 1.0))
    with pytest.raises(NetgrowValueError, match=r"labels must lie in \[0, 4\)"):
        fgsm(model, x, torch.full_like(y, 7), 0.1)
    with pytest.raises(NetgrowValueError, match="x has 200 samples but y has 3 labels"):
        fgsm(model, x, y[:3], 0.1)
    with pytest.raises(NetgrowValueError, match="eps_list"):
        fgsm_accuracy(model, (x, y), [0.1, -0.2])
    with pytest.raises(NetgrowValueError, match="need one positive std"):
        normalized_bounds([0.5], [0.0])
