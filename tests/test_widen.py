"""Net2WiderNet and random pad over channel groups: function preservation, maps, gradients, errors."""

from __future__ import annotations

import importlib
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netgrow
from archs import ARCH_KINDS, fresh_input, random_arch, single_thread  # noqa: F401 (fixture)
from netgrow.errors import LockedGroupError, NetgrowTypeError, NetgrowValueError, VerificationError
from netgrow.graph import channel_groups
from netgrow.ops import rules
from netgrow.ops.param_map import ParamSource, gather, map_tensors, param_map
from netgrow.ops.replay import replay_log
from netgrow.ops.widen import replay, widen
from netgrow.spec import growth_log

widen_mod = importlib.import_module("netgrow.ops.widen")  # the module; netgrow.ops.widen is the function

SEEDS = range(6)

pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------------------ helpers
def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert after[k].shape == v.shape and torch.equal(after[k], v), k


def outputs(old: nn.Module, new: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    old.eval(), new.eval()
    with torch.no_grad():
        return old(x), new(x)


def assert_preserved(old: nn.Module, new: nn.Module, x: torch.Tensor) -> float:
    a, b = outputs(old, new, x)
    err = float((a - b).abs().max())
    tol = 1e-10 if a.dtype == torch.float64 else 1e-5 * (1 + float(a.abs().max()))
    assert err <= tol, (err, tol)
    return err


def random_widths(model: nn.Module, x: torch.Tensor, rng: random.Random) -> dict[str, int]:
    """A random subset of the resizable groups, each named by a random one of its producers."""
    groups = [g for g in channel_groups(model, x) if g.resizable]
    widths = {}
    for g in rng.sample(groups, rng.randint(1, len(groups))):
        name = rng.choice(g.producers)
        widths[name] = g.width * rng.randint(2, 3) if g.uniform else g.width + rng.randint(1, 2 * g.width)
    return widths


def out_width(model: nn.Module, name: str) -> int:
    m = model.get_submodule(name)
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


# ------------------------------------------------------------------------------------------ properties
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_widen_random_groups_preserves_function(kind, dtype):
    for seed in SEEDS:
        model, x = random_arch(kind, seed, dtype)
        widths = random_widths(model, x, random.Random(seed))
        before = snapshot(model)
        new = widen(model, widths, x, seed=seed)
        assert_unchanged(model, before)
        assert_preserved(model, new, fresh_input(x, seed=seed + 100, batch=7))
        for name, q in widths.items():
            assert out_width(new, name) == q
        assert all(p.dtype == dtype for p in new.state_dict().values() if p.is_floating_point())
        rec = growth_log(new)[-1]
        assert rec["op"] == "widen" and rec["seed"] == seed and rec["method"] == "net2net"
        assert rec["input_shape"] == list(x.shape) and rec["input_dtype"] == str(dtype).removeprefix("torch.")
        # the record names each group by its canonical (first) producer
        groups = {n: g for g in channel_groups(model, x) for n in g.producers}
        assert rec["widths"] == {groups[n].name: q for n, q in widths.items()}


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_widen_factor_grows_every_hidden_group(kind):
    model, x = random_arch(kind, seed=2)
    new = widen(model, 1.5, x, seed=0)
    assert_preserved(model, new, fresh_input(x))
    old_groups = channel_groups(model, x)
    new_groups = {g.name: g for g in channel_groups(new, x)}
    for g in old_groups:
        if g.producers:
            expected = round(g.width * 1.5) if g.resizable else g.width
            assert new_groups[g.name].width == expected, g.name
    assert growth_log(new)[-1]["widths"] == {g.name: round(g.width * 1.5) for g in old_groups if g.resizable}


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_noise_perturbs_only_the_copies(kind):
    model, x = random_arch(kind, seed=3)
    exact = widen(model, 2.0, x, seed=1)
    noisy = widen(model, 2.0, x, seed=1, noise=0.01, verify=True)  # verification is skipped with noise
    a, b = outputs(model, noisy, fresh_input(x))
    err = float((a - b).abs().max())
    assert 0 < err < 0.05 * (1 + float(a.abs().max()))
    producers = {n for g in channel_groups(model, x) if g.resizable for n in g.producers}
    widths = {g.name: g.width for g in channel_groups(model, x)}
    ex, no = exact.state_dict(), noisy.state_dict()
    for key in ex:
        module, _, tname = key.rpartition(".")
        if module in producers and tname == "weight":
            n = out_width(model, module)
            assert torch.equal(ex[key][:n], no[key][:n]), key  # originals untouched
            assert not torch.equal(ex[key][n:], no[key][n:]), key  # every group's copies perturbed
        else:
            assert torch.equal(ex[key], no[key]), key
    assert widths  # the loop above saw the groups


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_random_pad_keeps_old_units_and_changes_function(kind):
    model, x = random_arch(kind, seed=4)
    new = widen(model, 2.0, x, seed=0, method="random_pad")  # no verification for the baseline
    a, b = outputs(model, new, fresh_input(x))
    assert float((a - b).abs().max()) > 1e-3
    assert growth_log(new)[-1]["method"] == "random_pad"
    pm = param_map(new)
    for key, src in pm.items():  # old units are copied undivided (see the param-map test for the values)
        assert all(torch.all(d.weight_scale[d.index >= 0] == 1) for d in src.dims), key
    assert any((d.index < 0).any() for src in pm.values() for d in src.dims)
    # fresh units are random where the layer default is random, defaults for norms
    for name, m in new.named_modules():
        fresh = [d.index < 0 for d in pm.get(f"{name}.weight", ParamSource(None)).dims if d.dim == 0]
        if not fresh or not fresh[0].any():
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert torch.all(m.running_var[fresh[0]] == 1) and torch.all(m.weight[fresh[0]] == 1), name
            assert torch.all(m.running_mean[fresh[0]] == 0) and torch.all(m.bias[fresh[0]] == 0), name
        elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            rows = m.weight[fresh[0]]
            assert rows.abs().min() > 0 and rows.std() > 0, name  # fresh random rows, not zeros or copies
            bound = 1 / (m.weight[0].numel() ** 0.5)  # PyTorch's default init range for the new fan-in
            assert rows.abs().max() <= bound, name


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_every_parameter_of_a_widened_model_gets_a_gradient(kind):
    model, x = random_arch(kind, seed=5)
    new = widen(model, 1.7, x, seed=0)
    new.train()
    loss = new(fresh_input(x, batch=6)).square().mean()
    loss.backward()
    for name, p in new.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) > 0 for p in new.parameters()) >= len(list(new.parameters())) // 2


@pytest.mark.parametrize("method", ["net2net", "random_pad"])
@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_param_map_reproduces_new_weights(kind, method):
    model, x = random_arch(kind, seed=6)
    new = widen(model, random_widths(model, x, random.Random(6)), x, seed=3, method=method)
    pm = param_map(new)
    new_sd = new.state_dict()
    assert set(pm) == set(new_sd)
    mapped = map_tensors(pm, model.state_dict(), {k: v.shape for k, v in new_sd.items()}, "weight")
    for key, value in new_sd.items():
        keep = torch.ones(value.shape, dtype=torch.bool)
        for d in pm[key].dims:  # fresh (random pad) entries are the op's own; compare the rest
            shape = [1] * value.dim()
            shape[d.dim] = -1
            keep &= (d.index >= 0).view(shape)
        assert torch.equal(mapped[key][keep], value[keep]), key
        if method == "random_pad":
            assert all((d.index[: len(d.index)] >= -1).all() for d in pm[key].dims)


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_param_map_gradient_scales_match_the_widened_gradients(kind):
    """Right after an exact widen, grad_new = grad_old[index] * grad_scale (what optimizer carry relies on)."""
    model, x = random_arch(kind, seed=7, dtype=torch.float64)
    new = widen(model, 2.0, x, seed=0)
    xb = fresh_input(x, batch=5)
    grads = []
    for m in (model, new):
        m.eval()
        m.zero_grad()
        m(xb).sin().sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    model.zero_grad(set_to_none=True)
    expected = map_tensors(param_map(new), grads[0], {n: g.shape for n, g in grads[1].items()}, "grad")
    for name, g in grads[1].items():
        assert torch.allclose(expected[name], g, rtol=1e-9, atol=1e-12), name


def test_grad_buffers_and_frozen_parameters_move_with_the_weights():
    model, x = random_arch("vgg", seed=1)
    model.train()
    model(x).sum().backward()
    model.features[0].bias is None or model.features[0].bias.requires_grad_(False)
    model.features[0].weight.requires_grad_(False)
    new = widen(model, {"features.0": out_width(model, "features.0") + 3}, x, seed=0)
    pm = param_map(new)
    for name, p in new.named_parameters():
        old = dict(model.named_parameters())[name]
        assert p.requires_grad == old.requires_grad, name
        if old.grad is not None:
            assert torch.equal(p.grad, gather(old.grad, pm[name], "grad", p.shape)), name
    bn = new.features[1]
    assert bn.running_mean.shape == bn.weight.shape and not isinstance(bn.running_mean, nn.Parameter)
    assert int(bn.num_batches_tracked) == int(model.features[1].num_batches_tracked)
    assert all(m.training for m in new.modules())  # training flags are kept


def test_seed_makes_widen_deterministic_and_none_is_recorded():
    model, x = random_arch("resnet", seed=2)
    a, b = widen(model, 1.5, x, seed=11), widen(model, 1.5, x, seed=11)
    c = widen(model, 1.5, x, seed=12)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    torch.manual_seed(0)
    rec = growth_log(widen(model, 1.5, x))[-1]
    assert isinstance(rec["seed"], int)
    torch.manual_seed(0)
    assert growth_log(widen(model, 1.5, x))[-1]["seed"] == rec["seed"]


def test_replay_rebuilds_shapes_and_the_same_log():
    model, x = random_arch("densenet", seed=3)
    grown = widen(widen(model, 1.5, x, seed=1), 2.0, x, seed=2, noise=0.01)
    rebuilt = replay_log(model, growth_log(grown))
    assert growth_log(rebuilt) == growth_log(grown)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in grown.state_dict().items()}
    rebuilt.load_state_dict(grown.state_dict())
    assert_preserved(grown, rebuilt, fresh_input(x))
    once = replay(model, growth_log(grown)[0])
    assert growth_log(once) == growth_log(grown)[:1]


# ------------------------------------------------------------------------------------------ norms, locks
class Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.fc1 = nn.Linear(4, 6)
        self.ln = nn.LayerNorm(6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x):
        x = F.relu(self.gn(self.conv(x))).mean((2, 3))
        return self.fc2(F.relu(self.ln(self.fc1(x))))


def randomised_norms() -> nn.Module:
    torch.manual_seed(0)
    model = Norms()
    with torch.no_grad():
        for m in (model.gn, model.ln):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layernorm_groupnorm_widen_by_whole_multiples(dtype):
    model = randomised_norms().to(dtype)
    x = torch.randn(3, 3, 5, 5, dtype=dtype)
    new = widen(model, {"conv": 8, "fc1": 18}, x, seed=0)
    assert_preserved(model, new, fresh_input(x))
    assert (new.gn.num_groups, new.gn.num_channels) == (4, 8)
    assert new.ln.normalized_shape == (18,) and new.ln.weight.shape == (18,)
    with pytest.raises(NetgrowValueError, match=r"width 6 for 'conv' is not a whole multiple of its width 4: module 'gn' \(GroupNorm\).*Use 8, 12"):
        widen(model, {"conv": 6}, x)
    with pytest.raises(NetgrowValueError, match=r"module 'ln' \(LayerNorm\) normalises over these channels"):
        widen(model, {"fc1": 7}, x)
    skipped = widen(model, 1.5, x, seed=0)  # 1.5x is no whole multiple: both groups keep their width
    assert skipped.conv.out_channels == 4 and skipped.fc1.out_features == 6
    doubled = widen(model, 2.0, x, seed=0)
    assert doubled.conv.out_channels == 8 and doubled.fc1.out_features == 12
    assert_preserved(model, doubled, fresh_input(x))


class HardCodedView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        return self.fc(self.conv2(F.relu(self.conv(x))).view(-1, 64))


def test_locked_group_is_refused_and_the_rest_still_widens():
    model, x = HardCodedView().eval(), torch.randn(2, 3, 4, 4)
    before = snapshot(model)
    with pytest.raises(LockedGroupError, match=r"cannot widen 'conv2' to 6: .*locked: .*hard-codes size 64"):
        widen(model, {"conv": 12, "conv2": 6}, x)
    assert_unchanged(model, before)
    new = widen(model, 2.0, x, seed=0)  # the factor form skips the locked group
    assert new.conv.out_channels == 16 and new.conv2.out_channels == 4
    assert_preserved(model, new, fresh_input(x))


def test_grouped_conv_locks():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(LockedGroupError, match=r"grouped conv '1' \(groups=2\)"):
        widen(model, {"0": 8}, torch.randn(2, 3, 3, 3))


# ------------------------------------------------------------------------------------------ bad input
def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


BAD = [
    ({"widths": {"nope": 8}}, NetgrowValueError, r"no module named 'nope'.*e\.g\. \['0', '3'\]"),
    ({"widths": {"1": 8}}, NetgrowValueError, r"module '1' \(BatchNorm1d\) does not produce a channel group.*\['0'\]"),
    ({"widths": {"0": 4}}, NetgrowValueError, r"new width 4 for '0' is narrower than its current width 6.*prune"),
    ({"widths": {"5": 4}}, NetgrowValueError, r"'5' produces the network output \(width 3\).*expand_classes"),
    ({"widths": {"0": 8.5}}, NetgrowTypeError, r"new width of '0' must be an int, got 8.5"),
    ({"widths": {3: 8}}, NetgrowTypeError, r"keys must be module names \(str\), got 3"),
    ({"widths": 0.5}, NetgrowValueError, r"factor 0.5 must be a finite number >= 1.*prune"),
    ({"widths": float("nan")}, NetgrowValueError, r"factor nan"),
    ({"widths": "2x"}, NetgrowTypeError, r"widths must be a float factor or a dict.*got str"),
    ({"widths": 2.0, "method": "copy"}, NetgrowValueError, r"unknown method 'copy'; use one of \('net2net', 'random_pad'\)"),
    ({"widths": 2.0, "noise": -0.1}, NetgrowValueError, r"noise must be a finite number >= 0.*got -0.1"),
    ({"widths": 2.0, "seed": "x"}, NetgrowTypeError, r"seed must be an int or None, got 'x'"),
    ({"widths": 2.0, "example_input": [1, 2]}, NetgrowTypeError, r"example_input must be a torch.Tensor.*got list"),
    ({"widths": 2.0, "example_input": torch.randn(2, 7)}, NetgrowValueError, r"cannot run on example_input of shape \(2, 7\)"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD, ids=[m[:30] for _, _, m in BAD])
def test_bad_input_raises_and_leaves_model_untouched(kwargs, error, message):
    model = _mlp()
    before = snapshot(model)
    args = {"example_input": torch.randn(4, 4), **kwargs}
    with pytest.raises(error, match=message):
        widen(model, args.pop("widths"), args.pop("example_input"), **args)
    assert_unchanged(model, before)
    assert netgrow.growth_log(model) == [] and param_map(model) is None


def test_two_producers_of_one_group_need_one_width():
    model, x = random_arch("resnet", seed=0)
    shared = next(g for g in channel_groups(model, x) if len(g.producers) > 1 and g.resizable)
    a, b = shared.producers[:2]
    with pytest.raises(NetgrowValueError, match=rf"'{a}' and '{b}' produce the same channel group"):
        widen(model, {a: shared.width + 1, b: shared.width + 2}, x)
    new = widen(model, {a: shared.width + 2, b: shared.width + 2}, x, seed=0)
    assert out_width(new, a) == out_width(new, b) == shared.width + 2


def test_not_a_model():
    with pytest.raises(NetgrowTypeError, match="expected a torch.nn.Module, got dict"):
        widen({}, 2.0, torch.randn(2, 2))


def test_failed_verification_names_a_module_and_leaves_the_input(monkeypatch):
    correct = widen_mod.net2net_map

    def broken(n, q, gen, uniform=False):  # forgets to divide the consumers' slices
        good = correct(n, q, gen, uniform)
        return widen_mod.GroupMap(good.index, torch.ones(n, dtype=torch.float64))

    model, x = random_arch("vgg", seed=1)
    before = snapshot(model)
    monkeypatch.setattr(widen_mod, "net2net_map", broken)
    with pytest.raises(VerificationError, match="widen did not preserve the function.*first diverging module") as info:
        widen(model, 2.0, x, seed=0)
    assert info.value.module is not None and info.value.max_error > 0
    assert_unchanged(model, before)


# ------------------------------------------------------------------------------------------ rules
def test_rule_aliases_replicate_and_divide():
    fc1, fc2 = nn.Linear(3, 2), nn.Linear(2, 4)
    x = torch.randn(5, 3)
    ref = fc2(fc1(x))
    index = torch.tensor([0, 1, 1, 1])
    counts = torch.bincount(index).double()
    rules.resize_out(fc1, index)
    rules.resize_in(fc2, index, counts)
    assert fc1.out_features == fc2.in_features == 4 and fc2.weight.shape == (4, 4)
    assert torch.allclose(fc2(fc1(x)), ref, atol=1e-6)
    bn = nn.BatchNorm1d(2)
    bn.running_mean.copy_(torch.tensor([1.0, 2.0]))
    rules.passthrough(bn, torch.tensor([1, 0, -1]))
    assert bn.num_features == 3 and bn.running_mean.tolist() == [2.0, 1.0, 0.0]  # fresh: default 0


class Exotic(nn.Module):
    """Per-channel layers beyond BatchNorm: InstanceNorm, PReLU, depthwise conv, GroupNorm, LayerNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
        self.prelu = nn.PReLU(4)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4 * 4, 6)
        self.ln = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        x = F.leaky_relu(self.gn(self.dw(self.prelu(self.inorm(self.conv(x))))))
        x = F.avg_pool2d(x, 2).flatten(1)
        return self.out(F.gelu(self.ln(self.fc(x))))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exotic_per_channel_layers_follow_the_mapping(dtype):
    torch.manual_seed(0)
    model = Exotic().to(dtype)
    x = torch.randn(4, 3, 4, 4, dtype=dtype)
    model.train()
    with torch.no_grad():
        for m in (model.inorm, model.gn, model.ln):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
        model.prelu.weight.uniform_(0.0, 0.5)
        model(x * 2 + 1)  # non-trivial InstanceNorm running statistics
    model.eval()
    new = widen(model, 2.0, x, seed=0)
    assert_preserved(model, new, fresh_input(x))
    assert (new.inorm.num_features, new.prelu.num_parameters, new.dw.groups, new.dw.out_channels) == (8, 8, 8, 8)
    assert (new.gn.num_groups, new.fc.in_features, new.ln.normalized_shape) == (4, 32, (12,))
    assert new.inorm.running_var.shape == (8,)
    pad = widen(model, 3.0, x, seed=0, method="random_pad")
    assert (pad.gn.num_groups, pad.gn.num_channels) == (6, 12)
    assert torch.all(pad.prelu.weight[4:] == 0.25) and torch.all(pad.ln.weight[6:] == 1)
    with pytest.raises(NetgrowValueError, match="not a whole multiple"):
        widen(model, {"conv": 5}, x)


def test_untraceable_model_raises_trace_error_and_stays_untouched():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc(x)
            return self.out(h if h.sum() > 0 else -h)  # data-dependent control flow

    model = Dynamic()
    before = snapshot(model)
    with pytest.raises(netgrow.TraceError, match=r"torch.fx could not trace Dynamic: .*Python control flow"):
        widen(model, {"fc": 8}, torch.randn(2, 3))
    with pytest.raises(TypeError):  # a TraceError is also a TypeError
        netgrow.prune(model, 0.5, torch.randn(2, 3))
    assert_unchanged(model, before)
