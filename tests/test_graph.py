"""Channel groups found by torch.fx on hand-made models: widths, producers, consumers, locks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import netgrow
import pytest
from archs import ARCH_KINDS, random_arch, single_thread  # noqa: F401 (fixture)
from netgrow.errors import NetgrowTypeError, NetgrowValueError, TraceError
from netgrow.graph import Consumer, analyse, channel_groups
from netgrow.graph import groups as G
from netgrow.ops import rules

pytestmark = pytest.mark.usefixtures("single_thread")


def by_producer(groups):
    return {g.producers[0]: g for g in groups if g.producers}


def test_mlp_groups_input_hidden_output():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    groups = channel_groups(net, torch.randn(5, 4))
    assert [g.width for g in groups] == [4, 8, 3]
    inp, hidden, out = groups
    assert inp.producers == [] and inp.locked and "input" in inp.reason and not inp.resizable
    assert hidden.producers == ["0"] and hidden.passthrough == ["1", "2", "3"]
    assert hidden.consumers == [Consumer("4", 0, 1)]
    assert not hidden.locked and not hidden.is_output and hidden.resizable and hidden.reason is None
    assert out.producers == ["4"] and out.is_output and not out.resizable and out.consumers == []
    assert netgrow.channel_groups is channel_groups


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 4 * 4, 7)
        self.out = nn.Linear(7, 2)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(torch.sigmoid(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.out(F.gelu(self.fc(x)))


def test_functional_activations_pooling_and_flatten_blocks():
    groups = by_producer(channel_groups(ConvNet(), torch.randn(2, 3, 8, 8)))
    assert groups["conv1"].width == 6 and groups["conv1"].passthrough == ["bn1"]
    assert groups["conv1"].consumers == [Consumer("conv2", 0, 1)]
    # after the 2x2 pool each of conv2's channels is a block of 4*4 features of fc's input
    assert groups["conv2"].consumers == [Consumer("fc", 0, 16)]
    assert groups["fc"].consumers == [Consumer("out", 0, 1)]
    assert not any(g.locked for name, g in groups.items())
    assert groups["out"].is_output


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.proj = nn.Conv2d(4, 6, 1)
        self.c = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b(F.relu(self.a(x)))  # identity shortcut: stem, b share one group
        x = self.proj(x) + self.c(x)  # projection shortcut: proj, c share one group
        return self.head(x.mean(dim=(2, 3)))


def test_residual_add_unites_producers():
    groups = channel_groups(Residual(), torch.randn(2, 3, 6, 6))
    names = {tuple(g.producers): g for g in groups}
    assert ("stem", "b") in names and ("proj", "c") in names
    shared = names[("stem", "b")]
    assert {c.module for c in shared.consumers} == {"a", "proj", "c"}
    assert names[("proj", "c")].consumers == [Consumer("head", 0, 1)]
    assert names[("a",)].width == 4 and not names[("a",)].locked


class Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 5, 1)
        self.bn = nn.BatchNorm2d(7)
        self.fc = nn.Linear(7 * 9, 2)

    def forward(self, x):
        y = self.bn(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.fc(torch.flatten(y, 1))


def test_cat_offsets_and_blocks():
    groups = by_producer(channel_groups(Cat(), torch.randn(2, 3, 3, 3)))
    assert groups["a"].consumers == [Consumer("fc", 0, 9)]
    assert groups["b"].consumers == [Consumer("fc", 2 * 9, 9)]
    assert groups["a"].passthrough == ["bn"] and groups["b"].passthrough == ["bn"]
    use = analyse(Cat(), torch.randn(2, 3, 3, 3)).modules["bn"]
    assert use.kind == "channelwise" and [s.block for s in use.carries] == [1, 1]


class SE(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.reduce = nn.Conv2d(8, 2, 1)
        self.expand = nn.Conv2d(2, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.dw(self.conv(x))
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return self.fc((x * gate).mean((2, 3)))


def test_se_gate_joins_group_and_depthwise_passes_through():
    groups = by_producer(channel_groups(SE(), torch.randn(2, 3, 5, 5)))
    g = groups["conv"]
    assert g.producers == ["conv", "expand"] and "dw" in g.passthrough
    assert {c.module for c in g.consumers} == {"reduce", "fc"}
    assert groups["reduce"].consumers == [Consumer("expand", 0, 1)]
    assert not g.locked


class HardCodedView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(self.conv2(x).view(-1, 64))


def test_hard_coded_view_locks_only_its_group():
    groups = by_producer(channel_groups(HardCodedView(), torch.randn(2, 3, 4, 4)))
    g = groups["conv2"]
    assert g.locked and "hard-codes size 64" in g.reason and "'view'" in g.reason
    assert not groups["conv"].locked  # everything else still works


class ChannelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)
        self.conv2 = nn.Conv2d(6, 6, 1)
        self.conv3 = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.conv3(F.relu(self.conv2(x))).mean((2, 3))


def test_channel_shuffle_locks():
    groups = by_producer(channel_groups(ChannelShuffle(), torch.randn(2, 3, 4, 4)))
    assert groups["conv"].locked and "splits or mixes these channels" in groups["conv"].reason
    assert not groups["conv2"].locked  # the shuffled channels feed conv2, whose own output is free


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 5, 1)
        self.c = nn.Conv2d(3, 6, 1)
        self.d = nn.Conv2d(3, 4, 1, groups=1)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.fc = nn.Linear(4 + 3 + 6 + 4, 2)

    def forward(self, x):
        a = torch.cumsum(self.a(x), dim=1)  # unknown op along the channels
        b = self.b(x)[:, :3]  # indexing the channel dim
        c = self.c(x).sum(1, keepdim=True) * self.c(x)  # a sum over channels (a mean only constrains: uniform)
        d = self.grouped(self.d(x))
        feats = torch.cat([a, b, c, d], 1).mean((2, 3))
        return self.fc(feats)


def test_unknown_ops_lock_with_reasons_naming_the_node():
    groups = by_producer(channel_groups(Odd(), torch.randn(2, 3, 4, 4)))
    assert "cumsum at node 'cumsum'" in groups["a"].reason and "does not know" in groups["a"].reason
    assert "indexes into the dim" in groups["b"].reason
    assert "reduces over these channels" in groups["c"].reason
    assert "grouped conv 'grouped' (groups=2)" in groups["d"].reason
    assert "grouped conv" in groups["grouped"].reason
    # the module called twice (c) keeps one group
    assert sum(1 for g in channel_groups(Odd(), torch.randn(2, 3, 4, 4)) if "c" in g.producers) == 1


class Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gn = nn.GroupNorm(2, 4)
        self.fc1 = nn.Linear(4, 6)
        self.ln = nn.LayerNorm(6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x):
        x = self.gn(self.conv(x)).mean((2, 3))
        return self.fc2(self.ln(self.fc1(x)))


def test_layernorm_groupnorm_make_groups_uniform():
    groups = by_producer(channel_groups(Norms(), torch.randn(2, 3, 4, 4)))
    assert "GroupNorm" in groups["conv"].uniform and "whole multiples" in groups["conv"].uniform
    assert "LayerNorm" in groups["fc1"].uniform
    assert not groups["conv"].locked and not groups["fc1"].locked
    assert analyse(Norms(), torch.randn(2, 3, 4, 4)).modules["ln"].param_dim == 0


def test_softmax_over_channels_locks_and_spatial_mean_passes():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.conv(x)
            return self.fc(F.softmax(y, dim=1).mean(-1))

    groups = by_producer(channel_groups(M(), torch.randn(2, 2, 9)))
    assert groups["conv"].locked and "normalises over these channels" in groups["conv"].reason


def test_every_graph_layer_role_has_a_resize_rule():
    layers = [nn.Linear(2, 2), nn.Conv1d(2, 2, 1), nn.Conv2d(2, 2, 1), nn.Conv3d(2, 2, 1), nn.Conv2d(2, 2, 3, groups=2)]
    layers += [nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.BatchNorm3d(2), nn.InstanceNorm2d(2, affine=True)]
    layers += [nn.GroupNorm(1, 2), nn.LayerNorm(2), nn.PReLU(2), nn.Embedding(3, 2), nn.RMSNorm(2)]
    for m in layers:
        assert rules.rule_for(m) is not None
    with pytest.raises(netgrow.NetgrowTypeError, match="no resize rule for MultiheadAttention"):
        rules.rule_for(nn.MultiheadAttention(4, 2))
    # and every module the analysis of the test architectures resizes has a rule for its role
    for kind in ARCH_KINDS:
        model, x = random_arch(kind, seed=0)
        for name, use in analyse(model, x).modules.items():
            module = model.get_submodule(name)
            roles = ["out", "in"] if use.kind == "producer" else ["pass"]
            for role in roles:
                assert rules.rule_for(module).dims(module, role), (kind, name, role)


def test_shared_module_called_twice_is_one_group():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(F.relu(self.fc(F.relu(self.fc(x)))))

    groups = channel_groups(M(), torch.randn(3, 4))
    # fc's output feeds fc again, so fc's input and output (and the network input) are one group
    assert [g.producers for g in groups] == [["fc"], ["out"]]
    assert groups[0].locked and "input" in groups[0].reason


def test_view_with_size_and_permute_are_followed():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(3, 5, 1)
            self.fc = nn.Linear(5, 4)
            self.out = nn.Linear(4 * 6, 2)

        def forward(self, x):
            y = self.conv(x).permute(0, 2, 1)  # (N, L, C): channels last, Linear acts on them
            y = self.fc(y)
            return self.out(y.reshape(y.size(0), -1))

    groups = by_producer(channel_groups(M(), torch.randn(2, 3, 6)))
    assert groups["conv"].consumers == [Consumer("fc", 0, 1)] and not groups["conv"].locked
    # (N, 6, 4) flattened: fc's channel j sits at positions l*4 + j, interleaved, so it locks
    assert groups["fc"].locked and "'reshape' splits or mixes these channels" in groups["fc"].reason


def test_trace_error_names_fx_message_and_advice():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return x

    with pytest.raises(TraceError, match="torch.fx could not trace Dynamic.*control flow"):
        channel_groups(Dynamic(), torch.randn(2, 3))
    with pytest.raises(NetgrowValueError, match=r"cannot run on example_input of shape \(2, 5\)"):
        channel_groups(nn.Linear(3, 3), torch.randn(2, 5))
    with pytest.raises(NetgrowTypeError, match="expected a torch.nn.Module, got str"):
        channel_groups("model", torch.randn(2, 5))
    assert issubclass(TraceError, TypeError)


@pytest.mark.parametrize("kind", ARCH_KINDS)
def test_analysis_leaves_model_untouched(kind):
    model, x = random_arch(kind, seed=1)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = channel_groups(model, x)
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # every hidden Conv/Linear of the generated families is resizable, the classifier is the output
    assert sum(g.is_output for g in groups) == 1
    assert all(g.resizable for g in groups if g.producers and not g.is_output)


def test_reason_helpers_roles():
    assert G.is_depthwise(nn.Conv2d(4, 4, 3, groups=4)) and not G.is_depthwise(nn.Conv2d(4, 8, 3, groups=4))


def test_upsampling_and_dtype_casts_pass_channels_through():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 5, 1)
            self.up = nn.Upsample(scale_factor=2)
            self.c = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            y = F.interpolate(self.up(self.a(x)), size=(3, 3)).type_as(self.b(x))
            return self.c(y).flatten(1)

    groups = by_producer(channel_groups(M(), torch.randn(2, 3, 3, 3)))
    assert not groups["a"].locked and groups["a"].consumers == [Consumer("c", 0, 1)] and "up" in groups["a"].passthrough
    assert groups["b"].consumers == [] and not groups["b"].locked  # type_as only borrows b's dtype
