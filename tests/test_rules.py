"""The layer-rule registry: every registered rule is checked numerically, and users can add their own."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

import netgrow
from archs import single_thread  # noqa: F401 (fixture)
from netgrow.errors import LockedGroupError, NetgrowTypeError, NetgrowValueError
from netgrow.graph import rules as R
from netgrow.graph.trace import trace
from netgrow.ops.verify import tolerance
from rule_cases import CASES

pytestmark = pytest.mark.usefixtures("single_thread")
REGISTERED = list(R.all_rules())  # the built-in registry, as collected (before any test adds a rule)


def _hits(graph: fx.Graph, model: nn.Module, target) -> bool:
    """Whether the traced graph calls ``target`` (a module class, function or method name)."""
    modules = dict(model.named_modules())
    for n in graph.nodes:
        if n.op == "call_module" and isinstance(target, type) and isinstance(modules[str(n.target)], target):
            return True
        if n.op == "call_function" and n.target is target:
            return True
        if n.op == "call_method" and n.target == target:
            return True
    return False


def _max_err(old: nn.Module, new: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((old(x) - new(x)).abs().max())


def test_every_registered_rule_has_a_numeric_check():
    missing = [R._target_name(t) for t in REGISTERED if t not in CASES]
    assert not missing, f"registered rules without a case in tests/rule_cases.py: {missing}"
    stale = [R._target_name(t) for t in CASES if t not in REGISTERED]
    assert not stale, f"cases for targets the registry does not have: {stale}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target", REGISTERED, ids=[R._target_name(t) for t in REGISTERED])
def test_registered_rule_widens_exactly_or_locks(target, dtype):
    assert target in CASES, f"{R._target_name(target)} has no case in tests/rule_cases.py"
    for case in CASES[target]:
        if case.needs_cuda and not torch.cuda.is_available():
            pytest.skip(f"{R._target_name(target)}: needs CUDA")
        model, x = case.build(dtype)
        assert _hits(trace(model), model, target), f"the case for {R._target_name(target)} never calls it"
        if case.locks:
            with pytest.raises(LockedGroupError, match="every hidden channel group is locked"):
                netgrow.widen(model, 2.0, x, seed=0)
            continue
        wide = netgrow.widen(model, 2.0, x, seed=0, verify=False)
        n_old = sum(p.numel() for p in model.parameters())
        assert sum(p.numel() for p in wide.parameters()) > n_old
        fresh = torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = model(fresh)
        assert _max_err(model, wide, fresh) <= tolerance(ref), R._target_name(target)


# ------------------------------------------------------------------------------------------ user rules
class Scale(nn.Module):
    """y = x * s with one learnt scale per channel (dim 1): a layer netgrow does not know."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.s = nn.Parameter(torch.rand(n) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s.view(1, -1, 1, 1)


SCALE_RULE = netgrow.LayerRule(
    "channelwise", in_dim=1, channel_tensors={"s": 0}, widths={"pass": ("n",)}, fresh=R.fill(s=1.0), keeps_shape=True
)


def _scale_net(dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), Scale(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten())
    return net.to(dtype).eval(), torch.randn(2, 3, 6, 6, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_custom_module_is_locked_before_registration_and_widened_exactly_after(dtype):
    net, x = _scale_net(dtype)
    before = {g.producers[0]: g for g in netgrow.channel_groups(net, x) if g.producers}
    assert before["0"].locked and "fixed-size tensor" in before["0"].reason
    with pytest.raises(LockedGroupError, match="locked"):
        netgrow.widen(net, {"0": 6}, x, seed=0)

    netgrow.register_rule(Scale, SCALE_RULE)
    try:
        after = {g.producers[0]: g for g in netgrow.channel_groups(net, x) if g.producers}
        assert after["0"].resizable and after["0"].passthrough == ["1", "2"]
        wide = netgrow.widen(net, {"0": 7}, x, seed=0)
        assert wide[1].s.shape == (7,) and wide[1].n == 7 and wide[3].in_channels == 7
        mapping = netgrow.param_map(wide)["1.s"].dims[0].index  # the replicated scales are the mapped old ones
        assert torch.equal(wide[1].s.detach(), net[1].s.detach()[mapping])
        fresh = torch.randn(5, 3, 6, 6, dtype=dtype, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            ref = net(fresh)
        assert _max_err(net, wide, fresh) <= tolerance(ref, 1e-6 if dtype == torch.float32 else 1e-12)
        padded = netgrow.widen(net, {"0": 6}, x, seed=0, method="random_pad")
        assert padded[1].s.detach()[4:].tolist() == [1.0, 1.0]  # fresh units start as the rule says
    finally:
        R.unregister_rule(Scale)
    assert netgrow.channel_groups(net, x)[1].locked  # unregistered again


def test_boundary_rule_locks_with_its_reason():
    class Shuffle(nn.Module):
        def forward(self, x):
            return x.flip(1)

    net = nn.Sequential(nn.Linear(3, 4), Shuffle(), nn.Linear(4, 2))
    netgrow.register_rule(Shuffle, netgrow.LayerRule("boundary", reason="reverses the channel order"))
    try:
        group = netgrow.channel_groups(net, torch.randn(2, 3))[1]
        assert group.locked and group.reason == "module '1' (Shuffle) reverses the channel order"
    finally:
        R.unregister_rule(Shuffle)


def test_consumer_rule_sums_over_channels_without_a_group_of_its_own():
    class Readout(nn.Module):  # out = x @ w, a fixed 2-dim read-out whose input follows the channels
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 2))

        def forward(self, x):
            return x @ self.w

    rule = netgrow.LayerRule("consumer", in_dim=-1, in_tensors={"w": 0}, fresh=R.fill(w=0.0))
    netgrow.register_rule(Readout, rule)
    try:
        net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), Readout()).double()
        x = torch.randn(5, 3, dtype=torch.float64)
        wide = netgrow.widen(net, {"0": 9}, x, seed=2)
        assert wide[2].w.shape == (9, 2) and _max_err(net, wide, x) < 1e-12
    finally:
        R.unregister_rule(Readout)


def test_register_rule_refuses_bad_input():
    with pytest.raises(NetgrowTypeError, match="int is not a torch.nn.Module subclass"):
        netgrow.register_rule(int, SCALE_RULE)
    with pytest.raises(NetgrowTypeError, match="must be a netgrow.LayerRule, got dict"):
        netgrow.register_rule(Scale, {"role": "channelwise"})
    with pytest.raises(NetgrowValueError, match="nn.Linear|Linear already has a rule; pass replace=True"):
        netgrow.register_rule(nn.Linear, R.LINEAR)
    with pytest.raises(NetgrowValueError, match="cumsum is a function/method, which has no tensors of its own"):
        netgrow.register_rule(torch.cumsum, SCALE_RULE)
    with pytest.raises(NetgrowValueError, match="role 'maker' is unknown"):
        netgrow.LayerRule("maker")
    with pytest.raises(NetgrowValueError, match="a producer needs out_dim and out_tensors"):
        netgrow.LayerRule("producer", in_dim=-1, in_tensors={"weight": 1})
    with pytest.raises(NetgrowValueError, match="channelwise rule needs in_dim"):
        netgrow.LayerRule("channelwise", channel_tensors={"s": 0})
    with pytest.raises(NetgrowValueError, match="flow 'twist' is unknown"):
        netgrow.LayerRule("passthrough", flow="twist")


class TransposedLinear(nn.Module):
    """y = x @ w + b with w of shape (in, out), like Hugging Face's GPT-2 ``Conv1D``."""

    def __init__(self, nx: int, nf: int):
        super().__init__()
        self.nx, self.nf = nx, nf
        self.weight = nn.Parameter(torch.randn(nx, nf) / nx**0.5)
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_user_producer_with_a_transposed_weight_widens_exactly(dtype):
    rule = netgrow.LayerRule(
        "producer", in_dim=-1, out_dim=-1, out_tensors={"weight": 1, "bias": 0}, in_tensors={"weight": 0},
        widths={"out": ("nf",), "in": ("nx",)}, fresh=R.fill(weight=0.0, bias=0.0),
    )  # fmt: skip
    torch.manual_seed(0)
    net = nn.Sequential(TransposedLinear(3, 6), nn.ReLU(), TransposedLinear(6, 2)).to(dtype)
    x = torch.randn(4, 3, dtype=dtype)
    # before: traced through, `@` is an unknown op, so netgrow sees no producer to widen
    assert not any(g.producers for g in netgrow.channel_groups(net, x))
    with pytest.raises(NetgrowValueError, match="'0' .*does not produce a channel group"):
        netgrow.widen(net, {"0": 9}, x)
    netgrow.register_rule(TransposedLinear, rule)
    try:
        wide = netgrow.widen(net, {"0": 9}, x, seed=0)
        assert wide[0].weight.shape == (3, 9) and wide[0].nf == 9 and wide[2].weight.shape == (9, 2)
        fresh = torch.randn(7, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            ref = net(fresh)
        assert _max_err(net, wide, fresh) <= tolerance(ref, 1e-6 if dtype == torch.float32 else 1e-12)
        noisy = netgrow.widen(net, {"0": 9}, x, seed=0, noise=0.1, verify=False)
        diff = (noisy[0].weight - wide[0].weight).abs()
        assert diff[:, :6].max() == 0 and diff[:, 6:].min() > 0  # only the copies' incoming weights (dim 1)
    finally:
        R.unregister_rule(TransposedLinear)
