"""Optimizer state carried through widening: the gradient correspondence and the carried moments obeying it.

Right after an exact widen, a unit replicated c times gets 1/c of the original's gradient on its incoming
weights, bias and norm parameters; the consumer's divided slices get the original's gradient. First
moments follow the gradient (x 1/c), second moments its square (x 1/c^2).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.ops.param_map import DimMap, ParamMap, ParamSource, gather, param_map
from netgrow.train.carry import carry_optimizer_state

TOL = 1e-6


class MLP(nn.Module):
    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def hand_widen(old: MLP, index: list[int]) -> tuple[MLP, ParamMap]:
    """Net2WiderNet on the hidden layer by hand: new unit j copies old unit index[j] (-1 = fresh)."""
    idx = torch.tensor(index)
    counts = torch.bincount(idx[idx >= 0], minlength=old.fc1.out_features)
    out = [DimMap.replicate(0, idx, counts, "out")]
    pas = [DimMap.replicate(0, idx, counts, "pass")]
    pm: ParamMap = {
        "fc1.weight": ParamSource("fc1.weight", out),
        "fc1.bias": ParamSource("fc1.bias", pas),
        "bn.weight": ParamSource("bn.weight", pas),
        "bn.bias": ParamSource("bn.bias", pas),
        "bn.running_mean": ParamSource("bn.running_mean", pas),
        "bn.running_var": ParamSource("bn.running_var", pas),
        "bn.num_batches_tracked": ParamSource("bn.num_batches_tracked"),
        "fc2.weight": ParamSource("fc2.weight", [DimMap.replicate(1, idx, counts, "in")]),
        "fc2.bias": ParamSource("fc2.bias"),
    }
    new = MLP(len(index)).double()
    old_state = old.state_dict()
    with torch.no_grad():
        for name, t in new.state_dict().items():
            t.copy_(gather(old_state[pm[name].source], pm[name], "weight", t.shape))
    return new, pm


def batch(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)


def grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def mapped(old: dict[str, torch.Tensor], pm: ParamMap, new_model: nn.Module, kind: str) -> dict[str, torch.Tensor]:
    shapes = {n: p.shape for n, p in new_model.named_parameters()}
    return {n: gather(old[pm[n].source], pm[n], kind, s) for n, s in shapes.items()}  # type: ignore[arg-type]


def max_err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def state_of(opt: torch.optim.Optimizer, model: nn.Module, key: str) -> dict[str, torch.Tensor]:
    return {n: opt.state[p][key] for n, p in model.named_parameters() if key in opt.state[p]}


def trained(opt_cls: type[torch.optim.Optimizer], steps: int = 3, **kw: Any) -> tuple[MLP, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = MLP().double()
    opt = opt_cls(model.named_parameters(), **kw)
    for s in range(steps):
        grads(model, *batch(s))
        opt.step()
    return model, opt


INDEX = [0, 1, 2, 0, 1, 0]  # unit 0 three times, unit 1 twice, unit 2 once


# ------------------------------------------------------------------ the gradient correspondence


def test_grown_gradient_equals_mapped_small_gradient() -> None:
    old, _ = trained(torch.optim.SGD, lr=0.1)
    new, pm = hand_widen(old, INDEX)
    x, y = batch(99)
    old.train(), new.train()
    with torch.no_grad():
        assert float((old(x) - new(x)).abs().max()) < 1e-12  # the widening is exact (train-mode BN too)
    g_old, g_new = grads(old, x, y), grads(new, x, y)
    assert max_err(g_new, mapped(g_old, pm, new, "grad")) < TOL
    # spelled out: unit 3 is the third copy of unit 0
    assert torch.allclose(g_new["fc1.weight"][3], g_old["fc1.weight"][0] / 3, atol=TOL)
    assert torch.allclose(g_new["bn.weight"][4], g_old["bn.weight"][1] / 2, atol=TOL)
    assert torch.allclose(g_new["fc2.weight"][:, 3], g_old["fc2.weight"][:, 0], atol=TOL)
    assert torch.allclose(g_new["fc2.bias"], g_old["fc2.bias"], atol=TOL)
    # and the 1/c matters: a plain copy would be wrong by a lot
    assert float((g_new["fc1.weight"][3] - g_old["fc1.weight"][0]).abs().max()) > 100 * TOL


# ------------------------------------------------------------------ carried state obeys it


def test_sgd_momentum_is_carried_and_keeps_following_the_gradient() -> None:
    old, opt = trained(torch.optim.SGD, lr=0.1, momentum=0.9)
    new, pm = hand_widen(old, INDEX)
    new_opt = torch.optim.SGD(new.named_parameters(), lr=0.01, momentum=0.9)
    assert carry_optimizer_state(opt.state_dict(), old, new_opt, new, pm) == 6
    carried = state_of(new_opt, new, "momentum_buffer")
    assert max_err(carried, mapped(state_of(opt, old, "momentum_buffer"), pm, new, "grad")) == 0.0
    assert torch.allclose(carried["fc1.weight"][5], opt.state[old.fc1.weight]["momentum_buffer"][0] / 3)
    assert new_opt.param_groups[0]["lr"] == 0.01  # settings come from the new optimizer
    # one more step on the same batch: m' = 0.9 m + g on both sides, so the map still holds
    x, y = batch(7)
    grads(old, x, y), grads(new, x, y)
    opt.step(), new_opt.step()
    expected = mapped(state_of(opt, old, "momentum_buffer"), pm, new, "grad")
    assert max_err(state_of(new_opt, new, "momentum_buffer"), expected) < TOL


@pytest.mark.parametrize(
    "opt_cls,kw",
    [(torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.05, "amsgrad": True})],
    ids=["adam", "adamw_amsgrad"],
)
def test_adam_moments_are_carried_with_1_over_c_and_1_over_c_squared(opt_cls: Any, kw: dict[str, Any]) -> None:
    old, opt = trained(opt_cls, lr=0.01, **kw)
    new, pm = hand_widen(old, INDEX)
    new_opt = opt_cls(new.named_parameters(), lr=0.001, **kw)
    carry_optimizer_state(opt.state_dict(), old, new_opt, new, pm)
    sq_keys = ["exp_avg_sq"] + (["max_exp_avg_sq"] if kw.get("amsgrad") else [])
    assert max_err(state_of(new_opt, new, "exp_avg"), mapped(state_of(opt, old, "exp_avg"), pm, new, "grad")) == 0.0
    for key in sq_keys:
        assert max_err(state_of(new_opt, new, key), mapped(state_of(opt, old, key), pm, new, "grad_sq")) == 0.0
    v_old = opt.state[old.fc1.weight]["exp_avg_sq"]
    assert torch.allclose(new_opt.state[new.fc1.weight]["exp_avg_sq"][3], v_old[0] / 9)
    assert all(float(s["step"]) == 3 for s in new_opt.state.values())
    assert new_opt.param_groups[0]["lr"] == 0.001
    x, y = batch(7)
    grads(old, x, y), grads(new, x, y)
    opt.step(), new_opt.step()
    assert max_err(state_of(new_opt, new, "exp_avg"), mapped(state_of(opt, old, "exp_avg"), pm, new, "grad")) < TOL
    for key in sq_keys:
        assert max_err(state_of(new_opt, new, key), mapped(state_of(opt, old, key), pm, new, "grad_sq")) < TOL


def test_rmsprop_state_is_carried_and_keeps_following_the_gradient() -> None:
    kw = {"momentum": 0.5, "centered": True, "eps": 1e-12}
    old, opt = trained(torch.optim.RMSprop, lr=0.01, **kw)
    new, pm = hand_widen(old, INDEX)
    new_opt = torch.optim.RMSprop(new.named_parameters(), lr=0.01, **kw)
    carry_optimizer_state(opt.state_dict(), old, new_opt, new, pm)
    x, y = batch(7)
    grads(old, x, y), grads(new, x, y)
    opt.step(), new_opt.step()
    old_sq, new_sq = state_of(opt, old, "square_avg"), state_of(new_opt, new, "square_avg")
    assert max_err(new_sq, mapped(old_sq, pm, new, "grad_sq")) < TOL
    assert max_err(state_of(new_opt, new, "grad_avg"), mapped(state_of(opt, old, "grad_avg"), pm, new, "grad")) < TOL
    # the momentum buffer sums g / sqrt(v): it does not scale with c, so it is copied by index
    buf_new, buf_old = state_of(new_opt, new, "momentum_buffer"), state_of(opt, old, "momentum_buffer")
    assert torch.allclose(buf_new["fc1.weight"][3], buf_old["fc1.weight"][0], atol=TOL)
    assert torch.allclose(buf_new["fc2.weight"][:, 3], buf_old["fc2.weight"][:, 0], atol=TOL)


# ------------------------------------------------------------------ fresh units and parameters


def test_fresh_units_and_fresh_parameters_start_with_zero_state() -> None:
    old, opt = trained(torch.optim.Adam, lr=0.01)
    new, pm = hand_widen(old, [0, 1, 2, -1])  # unit 3 is new (random pad)
    pm["fc2.bias"] = ParamSource(None)  # a whole new tensor
    new_opt = torch.optim.Adam(new.named_parameters(), lr=0.01)
    assert carry_optimizer_state(opt.state_dict(), old, new_opt, new, pm) == 5
    st = new_opt.state[new.fc1.weight]
    assert torch.equal(st["exp_avg"][3], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(st["exp_avg_sq"][3], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(st["exp_avg"][:3], opt.state[old.fc1.weight]["exp_avg"])
    assert torch.equal(new_opt.state[new.fc2.weight]["exp_avg"][:, 3], torch.zeros(2, dtype=torch.float64))
    assert new.fc2.bias not in new_opt.state
    grads(new, *batch(7))
    new_opt.step()  # the fresh tensor is initialised by Adam itself
    assert float(new_opt.state[new.fc2.bias]["step"]) == 1 and float(st["step"]) == 4


def test_no_growth_map_carries_state_unchanged_and_optimizer_or_unnamed_state_work_too() -> None:
    old, opt = trained(torch.optim.SGD, lr=0.1, momentum=0.9)
    expected = state_of(opt, old, "momentum_buffer")
    for source in (opt, opt.state_dict()):
        new_opt = torch.optim.SGD(old.parameters(), lr=0.1, momentum=0.9)
        carry_optimizer_state(source, old, new_opt, old, None)
        assert max_err(state_of(new_opt, old, "momentum_buffer"), expected) == 0.0
    # an optimizer built from model.parameters() has no names in its state_dict: matched by position
    unnamed = torch.optim.SGD(old.parameters(), lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["param_groups"] = [{k: v for k, v in g.items() if k != "param_names"} for g in sd["param_groups"]]
    unnamed.load_state_dict(sd)
    assert "param_names" not in unnamed.state_dict()["param_groups"][0]
    new, pm = hand_widen(old, INDEX)
    new_opt = torch.optim.SGD(new.parameters(), lr=0.1, momentum=0.9)
    carry_optimizer_state(unnamed.state_dict(), old, new_opt, new, pm)
    assert max_err(state_of(new_opt, new, "momentum_buffer"), mapped(expected, pm, new, "grad")) == 0.0


# ------------------------------------------------------------------ errors


def test_state_that_cannot_be_matched_to_parameters_is_refused() -> None:
    old, _ = trained(torch.optim.SGD, lr=0.1, momentum=0.9)
    partial = torch.optim.SGD(list(old.parameters())[:2], lr=0.1, momentum=0.9)
    grads(old, *batch(1))
    partial.step()
    new_opt = torch.optim.SGD(old.parameters(), lr=0.1)
    with pytest.raises(NetgrowValueError, match=r"covers 2 parameters but old_model has 6.*named_parameters"):
        carry_optimizer_state(partial.state_dict(), old, new_opt, old, None)
    msg = r"old_state must be optimizer.state_dict\(\) or the optimizer itself, got list"
    with pytest.raises(NetgrowTypeError, match=msg):
        carry_optimizer_state([], old, new_opt, old, None)  # type: ignore[arg-type]


def test_state_of_another_model_is_refused() -> None:
    other, opt = trained(torch.optim.SGD, lr=0.1, momentum=0.9)
    wide = MLP(5).double()
    msg = r"'momentum_buffer' of 'fc1\.weight' has shape \(3, 4\) but the parameter has \(5, 4\)"
    with pytest.raises(NetgrowValueError, match=msg):
        carry_optimizer_state(opt.state_dict(), wide, torch.optim.SGD(wide.parameters(), lr=0.1), wide, None)
    stranger = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(NetgrowValueError, match="new_optimizer holds a parameter that is not in new_model"):
        carry_optimizer_state(opt.state_dict(), other, stranger, other, None)


def test_unknown_state_key_starts_the_parameter_fresh(caplog: pytest.LogCaptureFixture) -> None:
    model = MLP().double()
    names = [n for n, _ in model.named_parameters()]
    state = {
        "state": {0: {"mystery": torch.ones(3, 4, dtype=torch.float64)}},
        "param_groups": [{"params": list(range(6)), "param_names": names}],
    }
    new_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with caplog.at_level(logging.WARNING, logger="netgrow.train.carry"):
        assert carry_optimizer_state(state, model, new_opt, model, None) == 0
    assert "unknown state 'mystery' of 'fc1.weight'" in caplog.text
    assert model.fc1.weight not in new_opt.state


# ------------------------------------------------------------------ through netgrow.widen (when it exists)


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.skipif(importlib.util.find_spec("netgrow.ops.widen") is None, reason="netgrow.ops.widen is not written yet")
@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_through_netgrow_widen_on_a_conv_net_with_bn(opt_name: str) -> None:
    from netgrow.ops.widen import widen

    torch.manual_seed(0)
    make = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01),
    }[opt_name]
    key1, key2 = ("momentum_buffer", None) if opt_name == "sgd" else ("exp_avg", "exp_avg_sq")
    old = ConvBN().double()
    opt = make(old.named_parameters())
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
        for _ in range(4)
    ]
    for x, y in data[:3]:
        grads(old, x, y)
        opt.step()
    new = widen(old, 2.0, example_input=data[0][0], seed=0)
    pm = param_map(new)
    assert pm is not None and new.conv1.out_channels > 4
    # gradient identity right after the exact widen (train mode, float64)
    x, y = data[3]
    g_old, g_new = grads(old, x, y), grads(new, x, y)
    for n, gn in g_new.items():
        assert float((gn - gather(g_old[pm[n].source], pm[n], "grad", gn.shape)).abs().max()) < TOL, n
    # carried state obeys the same correspondence, before and after one more step
    new_opt = make(new.named_parameters())
    carry_optimizer_state(opt.state_dict(), old, new_opt, new, pm)
    for when in ("carried", "after a step"):
        if when == "after a step":
            opt.step(), new_opt.step()
        assert max_err(state_of(new_opt, new, key1), mapped(state_of(opt, old, key1), pm, new, "grad")) < TOL, when
        if key2:
            assert max_err(state_of(new_opt, new, key2), mapped(state_of(opt, old, key2), pm, new, "grad_sq")) < TOL, when
