"""deepen: Net2DeeperNet identity layers and zero-init residual blocks on netgrow and user models."""

from __future__ import annotations

import copy
import importlib
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archs import ARCH_KINDS, fresh_input, random_arch, single_thread  # noqa: F401 (fixture)
from netgrow.errors import DataError, NetgrowError, NetgrowValueError, TraceError, VerificationError
from netgrow.models import create
from netgrow.ops.deepen import (
    collect_channel_stats,
    deepen,
    find_insertion_point,
    identity_block,
    replay,
    zero_init_residual_block,
)
from netgrow.ops.param_map import param_map
from netgrow.spec import growth_log

deepen_module = importlib.import_module("netgrow.ops.deepen")
REL = {torch.float32: 1e-5, torch.float64: 1e-10}
pytestmark = pytest.mark.usefixtures("single_thread")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / (1 + max |a|): the tolerance scale of netgrow.ops.verify."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / (1 + a.abs().max()))


def _eval_err(old: nn.Module, new: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return _rel_err(old.eval()(x), new.eval()(x))


def _randomise_bn(model: nn.Module, shape: tuple[int, ...], dtype=torch.float32, seed: int = 0) -> nn.Module:
    """Move every BatchNorm's statistics and affine parameters away from their init (a 'trained' model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
        model.train()
        for _ in range(3):
            model(torch.randn((32, *shape), generator=g, dtype=dtype) * 2 + 0.5)
    return model.eval()


def _model(name: str, dtype=torch.float32, **kw) -> tuple[nn.Module, tuple[int, ...]]:
    shape = {"mlp": (1, 40), "cnn1d": (1, 40)}.get(name, (3, 16, 16))
    size = [40] if name in ("mlp", "cnn1d") else 16
    torch.manual_seed(0)
    model = create(name, num_classes=6, width=0.25, in_channels=shape[0], input_size=size, **kw).to(dtype)
    return _randomise_bn(model, shape, dtype), shape


class UserNet(nn.Module):
    """A user's own model: its own forward, a hidden Linear head, a method deepen must keep."""

    def __init__(self, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.act1 = act()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 5, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(5)
        self.act2 = nn.ReLU6()
        self.fc1 = nn.Linear(5 * 4 * 4, 12)
        self.act3 = nn.ReLU()
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.fc2(self.act3(self.fc1(torch.flatten(x, 1))))

    def num_layers(self) -> int:
        return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in self.modules())


def _user(dtype=torch.float32, act: type[nn.Module] = nn.ReLU) -> UserNet:
    torch.manual_seed(1)
    return _randomise_bn(UserNet(act).to(dtype), (3, 8, 8), dtype)


# ---------------------------------------------------------------------------------- function preserved
OWN_POINTS = [
    ("vgg11", "features.0", "layer"),  # conv -> moves past BN and ReLU
    ("vgg11", "features.7", "layer"),  # a max-pool after a ReLU
    ("vgg11", "features.9", "residual"),
    ("resnet20", "layer1.0", "residual"),  # a whole basic block (post-ReLU)
    ("resnet20", "layer2.1.conv1", "layer"),
    ("resnet20", "layer3.2.bn2", "layer"),  # before the residual add: no activation, linear block
    ("mlp", "features.1", "layer"),
    ("cnn1d", "features.4", "layer"),
    ("cnn1d", "features.2", "residual"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_data", [False, True])
@pytest.mark.parametrize("name,after,kind", OWN_POINTS)
def test_deepen_preserves_own_models(name, after, kind, with_data, dtype):
    model, shape = _model(name, dtype)
    x = torch.randn(4, *shape, dtype=dtype)
    data = [torch.randn(16, *shape, dtype=dtype) * 2 + 0.5 for _ in range(2)] if with_data else None
    before = copy.deepcopy(model.state_dict())
    new = deepen(model, after, x, data=data, kind=kind)
    other = torch.randn(8, *shape, dtype=dtype) * 3  # not the example input
    assert _eval_err(model, new, other) <= REL[dtype]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("after", ["conv1", "bn1", "act1", "pool", "conv2", "act2", "fc1", "act3"])
@pytest.mark.parametrize("kind", ["layer", "residual"])
def test_deepen_preserves_a_user_model(after, kind, dtype):
    model = _user(dtype)
    x = torch.randn(2, 3, 8, 8, dtype=dtype)
    if kind == "residual" and after in ("fc1", "act3"):
        with pytest.raises(NetgrowValueError, match="kind='residual' needs a Conv1d/Conv2d feature map.*use kind='layer'"):
            deepen(model, after, x, kind=kind)
        return
    new = deepen(model, after, x, data=[torch.randn(16, 3, 8, 8, dtype=dtype)], kind=kind)
    assert type(new) is UserNet and new.num_layers() > model.num_layers()
    assert _eval_err(model, new, torch.randn(5, 3, 8, 8, dtype=dtype) * 2) <= REL[dtype]


def test_insertion_point_moves_past_bn_and_activation():
    model = _user()
    x = torch.randn(2, 3, 8, 8)
    for after, point in [("conv1", "act1"), ("bn1", "act1"), ("act1", "act1"), ("pool", "pool"), ("conv2", "act2"), ("fc1", "act3")]:
        assert find_insertion_point(model, after, x).path == point, after
    new = deepen(model, "conv1", x)
    assert isinstance(new.act1, nn.Sequential) and isinstance(new.act1[0], nn.ReLU)
    conv, bn, act = new.act1[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(act, nn.ReLU)
    assert conv.kernel_size == (3, 3) and conv.groups == 1 and conv.bias is not None  # like conv1
    expected = torch.zeros(6, 6, 3, 3)
    expected[:, :, 1, 1] = torch.eye(6)
    assert torch.equal(conv.weight, expected) and torch.equal(conv.bias, torch.zeros(6))
    # after the ReLU6 chain: a 1x1 kernel without bias like conv2, and a ReLU6 activation
    conv, bn, act = deepen(model, "conv2", x).act2[1]
    assert conv.kernel_size == (1, 1) and conv.bias is None and isinstance(act, nn.ReLU6)
    # after a Linear + ReLU without BN: an identity Linear and a ReLU, no BatchNorm
    lin, act = deepen(model, "fc1", x).act3[1]
    assert torch.equal(lin.weight, torch.eye(12)) and isinstance(act, nn.ReLU)


def test_sequential_name_means_its_last_module_and_netgrow_layouts():
    model, shape = _model("vgg11")
    x = torch.randn(2, *shape)
    assert find_insertion_point(model, "features", x).path == "features.28"
    assert find_insertion_point(model, "features.4", x).path == "features.6"
    new = deepen(model, "features.4", x)
    assert [type(m).__name__ for m in new.features[6][1]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    resnet, shape = _model("resnet20")
    assert find_insertion_point(resnet, "layer2", torch.randn(2, *shape)).path == "layer2.2"
    block = deepen(resnet, "layer2", torch.randn(2, *shape), kind="residual").layer2[2][1]
    assert type(block).__name__ == "BasicBlock" and torch.equal(block.bn2.weight, torch.zeros(8))
    lin = deepen(*_model("mlp")[:1], "features.3", torch.randn(2, 1, 40)).features[3][1][0]
    assert isinstance(lin, nn.Linear) and torch.equal(lin.weight, torch.eye(32))
    conv1d = deepen(*_model("cnn1d")[:1], "features.0", torch.randn(2, 1, 40)).features[2][1][0]
    assert isinstance(conv1d, nn.Conv1d) and conv1d.kernel_size == (5,) and conv1d.weight[:, :, 2].equal(torch.eye(8))


def test_batchnorm_statistics_come_from_data():
    model = _user()
    x = torch.randn(2, 3, 8, 8)
    batch = torch.randn(32, 3, 8, 8) * 2 + 0.5
    new = deepen(model, "conv1", x, data=[(batch, torch.zeros(32))])  # (x, y) pairs are accepted
    bn = new.act1[1][1]
    # the statistics of the point's value when the model's BatchNorms use batch statistics (training)
    captured = []
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    ref.act1.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        ref(batch)
    mean = captured[0].mean((0, 2, 3))
    var = captured[0].var((0, 2, 3), unbiased=False)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, atol=1e-5)
    assert torch.allclose(bn.weight, torch.sqrt(var + bn.eps), atol=1e-5) and torch.allclose(bn.bias, mean, atol=1e-5)
    nodata = deepen(model, "conv1", x).act1[1][1]
    assert torch.equal(nodata.running_mean, torch.zeros(6)) and torch.equal(nodata.running_var, torch.ones(6))


def test_train_mode_is_close_to_identity_with_data():
    """Train mode (batch statistics): on the batch the statistics came from, the inserted layer is the
    identity to float rounding (asserted <= 1e-5 relative); on a fresh batch it is close (asserted
    <= 5e-2 relative, measured ~1e-2) and much closer than without data (measured 0.1-0.2)."""
    model, shape = _model("vgg11")
    x = torch.randn(2, *shape)
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn((64, *shape), generator=g) * 2 + 0.5 for _ in range(4)]
    fresh = torch.randn((64, *shape), generator=g) * 2 + 0.5

    def train_out(m: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return copy.deepcopy(m).train()(inp)

    for after in ["features.0", "features.8"]:
        one = deepen(model, after, x, data=batches[:1])
        assert _rel_err(train_out(model, batches[0]), train_out(one, batches[0])) <= 1e-5
        with_data = _rel_err(train_out(model, fresh), train_out(deepen(model, after, x, data=batches), fresh))
        without = _rel_err(train_out(model, fresh), train_out(deepen(model, after, x), fresh))
        assert with_data <= 5e-2
        assert with_data * 4 < without


def test_residual_block_is_exact_in_train_mode_too():
    model, shape = _model("resnet20")
    new = deepen(model, "layer1.1", torch.randn(2, *shape), kind="residual")
    batch = torch.randn(16, *shape)
    with torch.no_grad():
        a, b = copy.deepcopy(model).train()(batch), copy.deepcopy(new).train()(batch)
    assert _rel_err(a, b) <= 1e-6


def test_every_parameter_of_a_deepened_model_gets_a_gradient():
    model, shape = _model("vgg11")
    x = torch.randn(8, *shape)
    y = torch.arange(8) % 6
    new = deepen(model, "features.4", x, data=[x]).train()
    F.cross_entropy(new(x), y).backward()
    for name, p in new.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    # zero-init residual: at first only the last BN's gamma/beta see a gradient (the branch is 0);
    # after one SGD step every parameter does
    res = deepen(model, "features.4", x, kind="residual").train()
    opt = torch.optim.SGD(res.parameters(), lr=0.1)
    F.cross_entropy(res(x), y).backward()
    assert res.features[6][1].bn2.weight.grad.abs().sum() > 0
    assert res.features[6][1].conv1.weight.grad.abs().sum() == 0
    opt.step()
    opt.zero_grad()
    F.cross_entropy(res(x), y).backward()
    for name, p in res.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_record_param_map_and_replay():
    model = _user()
    x = torch.randn(2, 3, 8, 8)
    new = deepen(model, "bn2", x, kind="layer")
    assert growth_log(new) == [
        {"op": "deepen", "after": "bn2", "kind": "layer", "point": "act2", "input_shape": [2, 3, 8, 8], "input_dtype": "float32"}
    ]
    pm = param_map(new)
    assert set(pm) == set(new.state_dict())
    assert pm["conv1.weight"].source == "conv1.weight"
    assert pm["act2.1.0.weight"].source is None and pm["act2.1.1.running_var"].source is None
    # wrapping a module with parameters renames them under .0
    wrapped = deepen(model, "fc1", x, kind="layer")  # fc1 -> act3 (no params)
    assert param_map(wrapped)["fc1.weight"].source == "fc1.weight"
    res = deepen(model, "conv2", x, kind="residual")
    assert all(param_map(res)[n].source is None for n in res.state_dict() if n.startswith("act2.1."))
    rebuilt = replay(_user(), growth_log(res)[0])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in res.state_dict().items()}
    assert growth_log(rebuilt) == growth_log(res)
    rebuilt.load_state_dict(res.state_dict())


def test_wrapping_a_module_with_parameters_keeps_them_under_index_0():
    class NoAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.head(self.bn(self.conv(x)) + 1.0).mean((2, 3))

    model = _randomise_bn(NoAct(), (3, 6, 6))
    x = torch.randn(2, 3, 6, 6)
    new = deepen(model, "conv", x)  # no activation: the point is after bn, a Conv + BN block
    assert isinstance(new.bn, nn.Sequential) and [type(m).__name__ for m in new.bn[1]] == ["Conv2d", "BatchNorm2d"]
    pm = param_map(new)
    assert pm["bn.0.weight"].source == "bn.weight" and pm["bn.0.running_mean"].source == "bn.running_mean"
    assert _eval_err(model, new, torch.randn(3, 3, 6, 6)) <= 1e-5


def test_chained_deepen_and_training_flags():
    model, shape = _model("vgg11")
    x = torch.randn(2, *shape)
    model.train()
    once = deepen(model, "features.2", x)
    twice = deepen(once, "features.2", x)  # resolves to the last module of the wrapped Sequential
    assert growth_log(twice)[-1]["point"] == "features.2.1.2"
    assert all(m.training for m in twice.modules())
    assert model.training  # the input's flags are untouched
    assert _eval_err(model, twice, torch.randn(3, *shape)) <= 1e-5


# ---------------------------------------------------------------------------------------------- refusals
class GatedNet(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = act
        self.shared = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.act(self.conv(x))
        x = F.relu(self.conv2(x))
        x = self.shared(self.conv3(x))
        x = self.shared(x)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("act", [nn.GELU(), nn.Tanh(), nn.Sigmoid(), nn.SiLU(), nn.LeakyReLU()])
@pytest.mark.parametrize("after", ["conv", "act"])
def test_refuses_non_idempotent_activations(act, after):
    model = GatedNet(act).eval()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(NetgrowValueError) as info:
        deepen(model, after, torch.randn(2, 3, 6, 6))
    msg = str(info.value)
    assert f"after {after!r} in GatedNet" in msg and type(act).__name__ in msg and "'act'" in msg
    assert "not idempotent" in msg and "ReLU/ReLU6/Hardtanh" in msg
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    "after,match",
    [
        ("nope", "has no module named 'nope'"),
        ("", "must name a submodule"),
        ("fc", "after 'fc' in GatedNet: it is the output layer.*use expand_classes"),
        ("conv3", "after 'conv3'.*feeds 'shared', which is called 2 times.*own module"),
        ("shared", "after 'shared'.*called 2 times"),
    ],
)
def test_refusals_name_the_module_and_the_fix(after, match):
    model = GatedNet(nn.ReLU()).eval()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(NetgrowValueError, match=match):
        deepen(model, after, torch.randn(2, 3, 6, 6))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("dtype,rel", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("kind", ["layer", "residual"])
def test_deepen_before_a_functional_relu(dtype, rel, kind):
    """`bn` feeds F.relu in forward: the wrapper applies ReLU itself, forward's relu(relu(v)) == relu(v)."""

    class FunctionalReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))

    torch.manual_seed(0)
    model = FunctionalReLU().to(dtype)
    model(torch.randn(16, 3, 6, 6, dtype=dtype))  # non-trivial running statistics
    model.eval()
    x = torch.randn(4, 3, 6, 6, dtype=dtype)
    new = deepen(model, "conv", x, data=[torch.randn(16, 3, 6, 6, dtype=dtype)], kind=kind)
    wrapper = new.get_submodule("bn")
    assert isinstance(wrapper, nn.Sequential) and isinstance(wrapper[1], nn.ReLU) and len(wrapper) == 3
    x_new = torch.randn(5, 3, 6, 6, dtype=dtype)
    with torch.no_grad():
        ref = model(x_new)
        assert (new(x_new) - ref).abs().max() <= rel * (1 + ref.abs().max())
    if kind == "layer":  # the block's BatchNorm measured the values after the ReLU: non-negative means
        bn = [m for m in wrapper[2].modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bn) == 1 and (bn[0].running_mean >= 0).all() and bn[0].running_mean.sum() > 0
    assert isinstance(model.bn, nn.BatchNorm2d)  # the input model is untouched


def test_refuses_functional_non_idempotent_and_bad_kind_and_empty_data():
    class Func(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            return self.out(torch.tanh(self.lin(x)))

    with pytest.raises(NetgrowValueError, match="functional tanh in forward, which is not idempotent"):
        deepen(Func(), "lin", torch.randn(2, 3))
    model = _user()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(NetgrowValueError, match="kind='wide' is not supported"):
        deepen(model, "conv1", x, kind="wide")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="yielded no batches"):
        deepen(model, "conv1", x, data=[])


def test_untraceable_model_raises_trace_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.act = nn.ReLU()
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            x = self.act(self.fc(x))
            return self.out(x) if x.sum() > 0 else -self.out(x)

    with pytest.raises(TraceError, match="torch.fx cannot trace Branchy.*control flow"):
        deepen(Branchy(), "fc", torch.randn(2, 3))


def test_single_sample_example_input_and_too_small_data_batches():
    model, shape = _model("mlp")
    x = torch.randn(1, *shape)
    new = deepen(model, "features.3", x)
    assert _eval_err(model, new, torch.randn(4, *shape)) <= 1e-5
    with pytest.raises(DataError, match=r"batch of shape \(1, 1, 40\) cannot be normalised.*at least 2 samples"):
        deepen(model, "features.3", x, data=[torch.randn(1, *shape)])


def test_refuses_on_own_models_output_layer():
    model, shape = _model("resnet20")
    with pytest.raises(NetgrowValueError, match="'classifier'.*output layer"):
        deepen(model, "classifier", torch.randn(2, *shape))


def test_a_failed_verification_raises_and_leaves_the_input_alone(monkeypatch):
    model = _user()
    before = copy.deepcopy(model.state_dict())
    broken = identity_block

    def not_identity(*args, **kwargs):
        block = broken(*args, **kwargs)
        with torch.no_grad():
            block[0].weight.mul_(2.0)
        return block

    monkeypatch.setattr(deepen_module, "identity_block", not_identity)
    with pytest.raises(VerificationError, match="deepen after 'conv1' did not preserve the function"):
        deepen(model, "conv1", torch.randn(2, 3, 8, 8))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# -------------------------------------------------------------------------------------------- builders
def test_builders_are_identities():
    x = torch.rand(3, 5, 7, 7)
    block = identity_block(5, 2, act=nn.ReLU(), bn=True).eval()
    assert _rel_err(x, block(x)) <= 1e-6
    assert torch.equal(zero_init_residual_block(5).train()(x), x)
    seq = torch.rand(3, 5, 9)
    assert torch.equal(zero_init_residual_block(5, dim=1, bn=False)(seq), seq)
    with pytest.raises(NetgrowValueError, match="odd kernel size"):
        identity_block(5, 2, kernel_size=2)


def test_collect_channel_stats_matches_direct_computation():
    model = _user()
    batches = [torch.randn(8, 3, 8, 8) for _ in range(3)]
    before = copy.deepcopy(model.state_dict())
    stats = collect_channel_stats(model, ["act1", "act3"], batches)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # BN buffers untouched
    outs: dict[str, list[torch.Tensor]] = {"act1": [], "act3": []}
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    ref.act1.register_forward_hook(lambda _m, _i, o: outs["act1"].append(o))
    ref.act3.register_forward_hook(lambda _m, _i, o: outs["act3"].append(o))
    with torch.no_grad():
        for b in batches:
            ref(b)
    for name, dims in [("act1", (0, 2, 3)), ("act3", (0,))]:
        allv = torch.cat(outs[name]).double()
        assert torch.allclose(stats[name].mean, allv.mean(dims), atol=1e-10)
        assert torch.allclose(stats[name].var, allv.var(dims, unbiased=False), atol=1e-10)
        assert stats[name].count == allv.numel() // allv.shape[1]


# --------------------------------------------------------------------------- random architectures (GRAPH)
def _output_name(model: nn.Module) -> str:
    if hasattr(model, "fc"):
        return "fc"
    head = model.classifier
    return f"classifier.{len(head) - 1}" if isinstance(head, nn.Sequential) else "classifier"


@pytest.mark.parametrize("arch", ARCH_KINDS)
def test_deepen_on_random_architectures(arch):
    """Deepen after random modules of random models: exact where an identity exists, else the right refusal.

    Every activation in these models is idempotent, so the only correct refusals are: the output layer,
    a conv followed by the functional sigmoid of a squeeze-excitation gate, and kind='residual' at a
    Linear (2-D) point.
    """
    inserted = 0
    for seed in range(6):
        rng = random.Random(seed)
        for dtype in (torch.float32, torch.float64):
            model, x = random_arch(arch, seed, dtype)
            names = [n for n, _ in model.named_modules() if n]
            out_name = _output_name(model)
            for after in rng.sample(names, min(5, len(names))) + [out_name]:
                kind = rng.choice(["layer", "residual"])
                ndim = []
                h = model.get_submodule(after).register_forward_hook(lambda _m, _i, o: ndim.append(o.dim()))
                with torch.no_grad():
                    model(x)
                h.remove()
                last = after  # a Sequential's name means its last module
                while isinstance(model.get_submodule(last), nn.Sequential):
                    last = f"{last}.{len(model.get_submodule(last)) - 1}"
                if last == out_name:
                    expected = "output layer"
                elif after.endswith("se.expand"):
                    expected = "functional sigmoid"
                elif kind == "residual" and ndim[0] == 2:
                    expected = "kind='residual' needs"
                else:
                    expected = None
                context = f"{arch} seed={seed} {dtype} after={after!r} kind={kind}"
                if expected is not None:
                    with pytest.raises(NetgrowError, match=expected):
                        deepen(model, after, x, kind=kind)
                    continue
                data = [fresh_input(x, seed=7, batch=16)]
                new = deepen(model, after, x, data=data, kind=kind)
                assert _eval_err(model, new, fresh_input(x)) <= REL[dtype], context
                inserted += 1
    assert inserted >= 20  # the sample is not all refusals
