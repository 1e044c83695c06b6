"""expand_classes: new output rows for new classes, old rows (and so old logits) kept."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from archs import single_thread  # noqa: F401 (fixture)
from netgrow.errors import NetgrowValueError
from netgrow.models import create
from netgrow.ops.expand import expand_classes, find_output_layer, replay
from netgrow.ops.param_map import map_tensors, param_map
from netgrow.spec import growth_log

pytestmark = pytest.mark.usefixtures("single_thread")


def _inputs(name: str) -> torch.Tensor:
    return torch.randn(6, 1, 40) if name in ("mlp", "cnn1d") else torch.randn(6, 3, 16, 16)


def _create(name: str, classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    seq = name in ("mlp", "cnn1d")
    return create(name, num_classes=classes, width=0.25, in_channels=1 if seq else 3, input_size=[40] if seq else 16).eval()


@pytest.mark.parametrize("name", ["vgg11", "resnet20", "mlp", "cnn1d"])
def test_old_rows_and_logits_are_kept(name):
    model = _create(name)
    x = _inputs(name)
    before = copy.deepcopy(model.state_dict())
    new = expand_classes(model, 15, x, seed=0).eval()
    old_w, new_w = model.classifier.weight, new.classifier.weight
    assert new_w.shape == (15, old_w.shape[1]) and new.classifier.bias.shape == (15,)
    assert torch.equal(new_w[:10], old_w) and torch.equal(new.classifier.bias[:10], model.classifier.bias)
    other = x * 2 + 1  # not the example input
    with torch.no_grad():
        a, b = model(other), new(other)
    assert b.shape == (6, 15)
    # Bit-equality of the logits is not guaranteed: BLAS picks its GEMM kernel by the number of
    # output rows (measured up to ~2e-5 absolute on a 512->10 vs 512->15 layer at batch 64).
    assert float((b[:, :10] - a).abs().max()) <= 1e-5 * (1 + float(a.abs().max()))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_old_logits_bit_identical_for_a_small_head():
    # with one GEMM kernel for both sizes (few rows) the old logits are bit-identical
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(5, 8)
    new = expand_classes(model, 4 + 3, x, seed=1)
    with torch.no_grad():
        assert torch.equal(new(x)[:, :4], model(x))


def test_new_rows_follow_the_default_init_and_the_seed():
    model = _create("vgg11")
    x = _inputs("vgg11")
    a = expand_classes(model, 60, x, seed=3).classifier
    b = expand_classes(model, 60, x, seed=3).classifier
    c = expand_classes(model, 60, x, seed=4).classifier
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight[10:], c.weight[10:])
    bound = 1 / math.sqrt(a.in_features)  # nn.Linear's kaiming_uniform(a=sqrt(5)) and bias bound
    fresh = a.weight[10:].detach()
    assert float(fresh.abs().max()) <= bound and float(a.bias[10:].detach().abs().max()) <= bound
    assert abs(float(fresh.std()) - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)


def test_seed_does_not_touch_the_global_rng():
    model, x = _create("mlp"), _inputs("mlp")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    expand_classes(model, 12, x, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_record_param_map_and_replay():
    model = _create("resnet20")
    x = _inputs("resnet20")
    new = expand_classes(model, 13, x, seed=7)
    assert growth_log(new) == [
        {"op": "expand_classes", "num_classes": 13, "layer": "classifier", "seed": 7, "input_shape": [6, 3, 16, 16], "input_dtype": "float32"}
    ]
    pm = param_map(new)
    assert pm["classifier.weight"].dims[0].index.tolist() == list(range(10)) + [-1] * 3
    assert pm["layer1.0.conv1.weight"].source == "layer1.0.conv1.weight"
    grads = {"classifier.weight": torch.ones(10, 16), "classifier.bias": torch.ones(10)}
    mapped = map_tensors(pm, grads, {k: new.state_dict()[k].shape for k in grads})
    assert torch.equal(mapped["classifier.weight"][:10], torch.ones(10, 16))
    assert torch.equal(mapped["classifier.weight"][10:], torch.zeros(3, 16))  # fresh rows: no momentum
    rebuilt = replay(_create("resnet20"), growth_log(new)[0])
    assert torch.equal(rebuilt.classifier.weight, new.classifier.weight)  # same seed, same rows
    rebuilt.load_state_dict(new.state_dict(), strict=True)


def test_user_model_with_conv_head_and_float64():
    class ConvHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
            self.head = nn.Conv2d(6, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return torch.flatten(self.pool(self.head(self.body(x))), 1)

    model = ConvHead().double().eval()
    assert find_output_layer(model) == "head"
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    new = expand_classes(model, 9, x, seed=0)
    assert type(new) is ConvHead and new.head.out_channels == 9 and new.head.weight.dtype == torch.float64
    with torch.no_grad():
        a, b = model(x), new(x)
    assert float((b[:, :4] - a).abs().max()) <= 1e-10 * (1 + float(a.abs().max()))


def test_refuses_fewer_or_equal_classes():
    model = _create("vgg11")
    before = copy.deepcopy(model.state_dict())
    for n in (10, 4):
        with pytest.raises(NetgrowValueError, match=rf"'classifier' already has 10 classes, got num_classes={n}.*larger than 10"):
            expand_classes(model, n, _inputs("vgg11"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_refuses_a_softmax_output_and_a_headless_model():
    class Softmaxed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x), dim=1)

    with pytest.raises(NetgrowValueError, match="'fc' goes through operation 'softmax'.*return the raw logits"):
        expand_classes(Softmaxed(), 5, torch.randn(2, 4))

    class Headless(nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(NetgrowValueError, match="cannot find the output layer of Headless"):
        expand_classes(Headless(), 5, torch.randn(2, 4))
