"""L1-norm structured pruning over conv channel groups: ratio, kept filters, shapes, maps, errors."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netgrow
from archs import ARCH_KINDS, fresh_input, random_arch, single_thread  # noqa: F401 (fixture)
from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.graph import channel_groups
from netgrow.ops.param_map import map_tensors, param_map
from netgrow.ops.replay import replay_log
from netgrow.spec import growth_log

prune_mod = importlib.import_module("netgrow.ops.prune")  # the module; netgrow.ops.prune is the function
prune = prune_mod.prune

pytestmark = pytest.mark.usefixtures("single_thread")

CONVS = (nn.Conv1d, nn.Conv2d)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def width_of(model, name):
    m = model.get_submodule(name)
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.8])
@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_prune_hits_ratio_per_group_and_runs(kind, ratio):
    for seed in range(3):
        model, x = random_arch(kind, seed)
        before = snapshot(model)
        new = prune(model, ratio, x)
        assert_unchanged(model, before)
        rec = growth_log(new)[-1]
        groups = channel_groups(model, x)
        prunable = [g for g in groups if g.resizable and all(isinstance(model.get_submodule(p), CONVS) for p in g.producers)]
        assert set(rec["widths"]) <= {g.name for g in prunable}
        pruned = total = 0
        for g in groups:
            for p in g.producers:
                if isinstance(model.get_submodule(p), CONVS):
                    total += g.width
            if g in prunable:
                keep = rec["widths"].get(g.name, g.width)
                assert keep >= 1 and abs((g.width - keep) - ratio * g.width) <= 1, (g.name, g.width, keep)
                for p in g.producers:  # shapes as reported, for every producer of the group
                    assert width_of(new, p) == keep
                pruned += (g.width - keep) * len(g.producers)
            else:
                for p in g.producers:
                    assert width_of(new, p) == g.width  # locked, linear and output groups untouched
        assert (rec["pruned_filters"], rec["conv_filters"]) == (pruned, total)
        assert rec["ratio"] == ratio and rec["criterion"] == "l1" and rec["input_shape"] == list(x.shape)
        new.eval()
        with torch.no_grad():
            y = new(fresh_input(x, batch=3))
        assert y.shape == (3, *model(x).shape[1:]) and torch.isfinite(y).all()


def test_prune_overall_ratio_on_a_plain_conv_stack():
    torch.manual_seed(0)
    convs = [nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(), nn.Conv2d(20, 30, 3, padding=1), nn.ReLU(), nn.Conv2d(30, 10, 1)]
    model = nn.Sequential(*convs, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(10, 4))
    new = prune(model, 0.3, torch.randn(2, 3, 6, 6))
    rec = growth_log(new)[-1]
    assert rec["widths"] == {"0": 14, "2": 21, "4": 7}
    assert rec["pruned_filters"] == 6 + 9 + 3 and rec["conv_filters"] == 60  # exactly 30 %
    assert new[8].in_features == 7 and new[8].out_features == 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 9, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(F.relu(self.conv2(x)), 1))


def test_prune_keeps_the_largest_l1_filters_everywhere_in_the_group():
    torch.manual_seed(1)
    model = Net().eval()
    with torch.no_grad():
        model.conv.weight.mul_(torch.tensor([5.0, 0.1, 3.0, 0.2, 4.0, 0.3]).view(6, 1, 1, 1))
        model.bn.running_mean.uniform_(-1, 1)
    x = torch.randn(2, 3, 3, 3)
    new = prune(model, 0.5, x)
    kept = torch.tensor([0, 2, 4])
    assert torch.equal(new.conv.weight, model.conv.weight[kept]) and torch.equal(new.conv.bias, model.conv.bias[kept])
    for t in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(new.bn, t), getattr(model.bn, t)[kept]), t
    # conv2 (4 -> 2 channels) feeds fc through a flatten: each channel is a block of 9 features
    kept2 = torch.topk(model.conv2.weight.abs().flatten(1).sum(1), 2).indices.sort().values
    assert torch.equal(new.conv2.weight, model.conv2.weight[kept2][:, kept])
    cols = (kept2[:, None] * 9 + torch.arange(9)).flatten()
    assert torch.equal(new.fc.weight, model.fc.weight[:, cols])
    assert new.fc.out_features == 5  # the output layer is never pruned
    pm = param_map(new)
    mapped = map_tensors(pm, model.state_dict(), {k: v.shape for k, v in new.state_dict().items()}, "weight")
    assert all(torch.equal(mapped[k], v) for k, v in new.state_dict().items())


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_prune_param_map_and_replay(kind):
    model, x = random_arch(kind, seed=4)
    new = prune(model, 0.4, x)
    new_sd = new.state_dict()
    mapped = map_tensors(param_map(new), model.state_dict(), {k: v.shape for k, v in new_sd.items()}, "weight")
    assert all(torch.equal(mapped[k], v) for k, v in new_sd.items())
    rebuilt = replay_log(model, growth_log(new))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in new_sd.items()}
    assert growth_log(rebuilt) == growth_log(new)


def test_ratio_zero_changes_nothing_but_records():
    model, x = random_arch("resnet", seed=1)
    new = prune(model, 0.0, x)
    assert growth_log(new)[-1]["widths"] == {} and growth_log(new)[-1]["pruned_filters"] == 0
    new.eval()
    with torch.no_grad():
        assert torch.equal(new(x), model(x))


def test_locked_and_norm_groups_are_left_alone():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.gn = nn.GroupNorm(2, 8)
            self.b = nn.Conv2d(8, 6, 1)
            self.c = nn.Conv2d(6, 4, 1)
            self.fc = nn.Linear(64, 2)

        def forward(self, x):
            x = self.b(F.relu(self.gn(self.a(x))))
            return self.fc(self.c(F.relu(x)).view(-1, 64))  # hard-coded view locks c's group

    model, x = M(), torch.randn(2, 3, 4, 4)
    new = prune(model, 0.5, x)
    assert growth_log(new)[-1]["widths"] == {"b": 3}
    assert (new.a.out_channels, new.b.out_channels, new.c.out_channels, new.c.in_channels) == (8, 3, 4, 3)


BAD = [
    (1.0, NetgrowValueError, r"ratio 1.0 is outside \[0, 1\).*fraction of conv filters"),
    (-0.1, NetgrowValueError, r"ratio -0.1 is outside \[0, 1\)"),
    (1.5, NetgrowValueError, r"ratio 1.5 is outside"),
    (float("nan"), NetgrowValueError, r"ratio nan is outside"),
    ("0.5", NetgrowTypeError, r"ratio must be a number in \[0, 1\), got '0.5' \(str\)"),
    (True, NetgrowTypeError, r"ratio must be a number"),
]


@pytest.mark.parametrize("ratio,error,message", BAD)
def test_bad_ratio(ratio, error, message):
    model, x = random_arch("vgg", seed=0)
    before = snapshot(model)
    with pytest.raises(error, match=message):
        prune(model, ratio, x)
    assert_unchanged(model, before)


def test_bad_criterion_model_and_input():
    model, x = random_arch("vgg", seed=0)
    with pytest.raises(NetgrowValueError, match=r"unknown criterion 'l2'; use one of \('l1',\)"):
        prune(model, 0.5, x, criterion="l2")
    with pytest.raises(NetgrowTypeError, match="prune: example_input must be a torch.Tensor"):
        prune(model, 0.5, x.numpy())
    with pytest.raises(NetgrowTypeError, match="prune: expected a torch.nn.Module, got int"):
        prune(3, 0.5, x)
    with pytest.raises(NetgrowValueError, match="cannot run on example_input of shape"):
        prune(model, 0.5, x[:, :, :1, :1].reshape(4, -1))


def test_replay_rejects_a_width_that_does_not_fit():
    model, x = random_arch("vgg", seed=0)
    rec = growth_log(prune(model, 0.5, x))[-1]
    name = next(iter(rec["widths"]))
    bad = {**rec, "widths": {name: 10_000}}
    with pytest.raises(NetgrowValueError, match=rf"recorded width 10000 for '{name}' does not fit"):
        prune_mod.replay(model, bad)
