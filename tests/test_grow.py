"""models.grow: exact growth paths VGG11 -> 13 -> 16 -> 19 and ResNet-20 -> 32 -> 56 (-> 110)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archs import single_thread  # noqa: F401 (fixture)
from netgrow.errors import NetgrowValueError
from netgrow.models import architecture, create, grow
from netgrow.models.grow import replay
from netgrow.ops.deepen import deepen
from netgrow.ops.param_map import param_map
from netgrow.ops.widen import widen
from netgrow.spec import growth_log

WIDTH = 0.25
pytestmark = pytest.mark.usefixtures("single_thread")


def _trained(name: str, dtype=torch.float32, width: float = WIDTH) -> nn.Module:
    """A model with BatchNorm statistics and affine parameters away from their init."""
    torch.manual_seed(0)
    model = create(name, num_classes=10, width=width).to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
        model.train()
        for _ in range(2):
            model(torch.randn((16, 3, 32, 32), generator=g, dtype=dtype) * 2 + 0.5)
    return model.eval()


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_step(old: nn.Module, new: nn.Module, target: str, rel: float = 1e-5, width: float = WIDTH) -> None:
    fresh = create(target, num_classes=10, width=width).to(next(old.parameters()).dtype)
    assert _shapes(new) == _shapes(fresh)  # same keys, same order, same shapes
    assert [type(m) for m in new.modules()] == [type(m) for m in fresh.modules()]
    fresh.load_state_dict(new.state_dict(), strict=True)
    x = torch.randn(8, 3, 32, 32, dtype=fresh.classifier.weight.dtype) * 2  # not the example input
    with torch.no_grad():
        a = old.eval()(x)
        for candidate in (new.eval(), fresh.eval()):
            assert float((candidate(x) - a).abs().max()) <= rel * (1 + float(a.abs().max()))
    assert architecture(new) == target


@pytest.mark.parametrize("path", [["vgg11", "vgg13", "vgg16", "vgg19"], ["resnet20", "resnet32", "resnet56"]])
def test_growth_path_is_exact(path):
    model = _trained(path[0])
    x = torch.randn(2, 3, 32, 32)
    for target in path[1:]:
        grown = grow(model, target, example_input=x)
        _check_step(model, grown, target)
        model = grown
    assert [r["target"] for r in growth_log(model)] == path[1:]


@pytest.mark.parametrize("start,target", [("vgg11", "vgg19"), ("vgg13", "vgg16"), ("resnet20", "resnet110"), ("resnet44", "resnet56")])
def test_direct_jumps(start, target):
    model = _trained(start)
    _check_step(model, grow(model, target, torch.randn(2, 3, 32, 32)), target)


def test_float64_growth_is_exact_to_1e_10():
    for start, target in [("vgg11", "vgg16"), ("resnet20", "resnet32")]:
        model = _trained(start, torch.float64)
        grown = grow(model, target, torch.randn(2, 3, 32, 32, dtype=torch.float64))
        _check_step(model, grown, target, rel=1e-10)


def test_grow_with_data_sets_batchnorm_statistics():
    model = _trained("vgg11")
    x = torch.randn(2, 3, 32, 32)
    batches = [torch.randn(32, 3, 32, 32) * 2 + 0.5 for _ in range(2)]
    grown = grow(model, "vgg13", x, data=batches)
    _check_step(model, grown, "vgg13")
    new_bn = grown.features[4]  # vgg13 stage 1: conv0 bn1 relu2 | conv3 bn4 relu5 (new) | pool6
    assert isinstance(new_bn, nn.BatchNorm2d) and not torch.equal(new_bn.running_mean, torch.zeros_like(new_bn.running_mean))
    assert torch.allclose(new_bn.weight, torch.sqrt(new_bn.running_var + new_bn.eps))
    assert torch.equal(new_bn.bias, new_bn.running_mean)
    # train mode on the statistics' own batch: the new layers are the identity up to rounding
    one = grow(model, "vgg13", x, data=batches[:1])
    with torch.no_grad():
        a, b = copy.deepcopy(model).train()(batches[0]), copy.deepcopy(one).train()(batches[0])
    assert float((a - b).abs().max()) <= 1e-5 * (1 + float(a.abs().max()))


def test_param_map_follows_renamed_layers():
    grown = grow(_trained("vgg11"), "vgg19", torch.randn(2, 3, 32, 32))
    pm = param_map(grown)
    assert set(pm) == set(grown.state_dict())
    # vgg11 stage 2 conv is features.4; in vgg19 it is features.7 (stage 1 gained one triple)
    assert pm["features.7.weight"].source == "features.4.weight"
    assert pm["features.8.running_var"].source == "features.5.running_var"
    assert pm["features.27.weight"].source == "features.15.weight"
    assert pm["features.3.weight"].source is None and pm["features.4.running_mean"].source is None
    assert pm["classifier.weight"].source == "classifier.weight"
    sources = [s.source for s in pm.values() if s.source is not None]
    assert len(sources) == len(set(sources)) == len(_trained("vgg11").state_dict())
    res = grow(_trained("resnet20"), "resnet32", torch.randn(2, 3, 32, 32))
    pm = param_map(res)
    assert pm["layer2.2.conv1.weight"].source == "layer2.2.conv1.weight"
    assert pm["layer2.3.conv1.weight"].source is None and pm["layer3.4.bn2.weight"].source is None


def test_resnet_blocks_are_zero_init_and_exact_in_train_mode():
    model = _trained("resnet20")
    grown = grow(model, "resnet32", torch.randn(2, 3, 32, 32))
    for stage in (grown.layer1, grown.layer2, grown.layer3):
        assert len(stage) == 5
        for block in list(stage)[3:]:
            assert torch.equal(block.bn2.weight, torch.zeros_like(block.bn2.weight))
    batch = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        a, b = copy.deepcopy(model).train()(batch), copy.deepcopy(grown).train()(batch)
    assert float((a - b).abs().max()) <= 1e-6 * (1 + float(a.abs().max()))


def test_every_parameter_of_a_grown_vgg_gets_a_gradient():
    grown = grow(_trained("vgg11"), "vgg13", torch.randn(2, 3, 32, 32)).train()
    x = torch.randn(8, 3, 32, 32)
    F.cross_entropy(grown(x), torch.arange(8)).backward()
    for name, p in grown.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_widened_model_grows_into_the_wider_family_member():
    model = _trained("vgg11")
    x = torch.randn(2, 3, 32, 32)
    wide = widen(model, 2.0, x, seed=0)  # width 0.25 -> 0.5 in every hidden layer
    grown = grow(wide, "vgg16", x)
    _check_step(model, grown, "vgg16", width=2 * WIDTH)
    res = _trained("resnet20")
    grown = grow(widen(res, 2.0, x, seed=0), "resnet32", x)
    _check_step(res, grown, "resnet32", width=2 * WIDTH)


def test_replay_rebuilds_the_structure():
    model = _trained("vgg13")
    grown = grow(model, "vgg19", torch.randn(2, 3, 32, 32))
    record = growth_log(grown)[-1]
    assert record == {"op": "grow", "target": "vgg19", "input_shape": [2, 3, 32, 32], "input_dtype": "float32"}
    rebuilt = replay(create("vgg13", width=WIDTH), record)
    assert _shapes(rebuilt) == _shapes(grown) and architecture(rebuilt) == "vgg19"


@pytest.mark.parametrize(
    "start,target,match",
    [
        ("vgg16", "vgg11", "cannot grow a vgg16 into 'vgg11'.*\\['vgg19'\\]"),
        ("vgg16", "vgg16", "cannot grow a vgg16 into 'vgg16'"),
        ("vgg11", "resnet32", "cannot grow a vgg11 into 'resnet32'"),
        ("resnet20", "resnet21", "cannot grow a resnet20 into 'resnet21'.*known models"),
        ("vgg19", "vgg19", "none, it is the deepest"),
        ("mlp", "vgg11", "'mlp' has no growth path"),
    ],
)
def test_refusals(start, target, match):
    model = create(start, width=WIDTH)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(NetgrowValueError, match=match):
        grow(model, target, torch.randn(2, 3, 32, 32))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_refuses_deepened_and_user_models():
    x = torch.randn(2, 3, 32, 32)
    deepened = deepen(create("vgg11", width=WIDTH), "features.2", x)
    with pytest.raises(NetgrowValueError, match="was deepened.*grow the plain model first"):
        grow(deepened, "vgg13", x)
    with pytest.raises(NetgrowValueError, match="not a netgrow model"):
        grow(nn.Sequential(nn.Conv2d(3, 3, 3)), "vgg13", x)


def test_full_width_vgg11_to_vgg19_loads_into_a_plain_vgg19():
    """The paper's case (Feng & Panda, Fig. 1): a CIFAR VGG11 at width 1 becomes a 20.04M-parameter VGG19."""
    torch.manual_seed(0)
    model = create("vgg11", num_classes=100).eval()
    x = torch.randn(2, 3, 32, 32)
    grown = grow(model, "vgg19", x)
    fresh = create("vgg19", num_classes=100)
    fresh.load_state_dict(grown.state_dict(), strict=True)
    assert sum(p.numel() for p in fresh.parameters()) == 20_086_692  # 20,040,522 + 90 * 513 more classifier rows
    with torch.no_grad():
        a, b = model(x * 2), fresh.eval()(x * 2)
    assert float((a - b).abs().max()) <= 1e-5 * (1 + float(a.abs().max()))


def test_training_flags_are_kept():
    model = create("vgg11", width=WIDTH).train()
    model.features[1].eval()  # e.g. a frozen BatchNorm
    grown = grow(model, "vgg13", torch.randn(2, 3, 32, 32))
    assert grown.training and grown.features.training and not grown.features[1].training
    assert grown.features[4].training  # an inserted BN follows its container
    assert model.training and not model.features[1].training  # the input is untouched
