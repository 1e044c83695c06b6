"""netgrow.carry_optimizer / rebind_scheduler: growth inside a plain PyTorch loop.

The loss right after each function-preserving growth equals the loss before it; the new optimizer has the
old one's class, groups and hyper-parameters; its state is the old state mapped through the composed
parameter map of the op chain; one step after growth equals the small model's step mapped onto the grown
weights (exact for SGD; for Adam/RMSprop, whose update is scale-free, up to eps).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import netgrow
from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.ops.param_map import compose, gather, param_map
from netgrow.train.carry import _index_only, carry_optimizer_state

README = Path(__file__).resolve().parents[1] / "README.md"


def mlp(dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).to(dtype)


def batch(dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=gen, dtype=dtype), torch.randint(0, 3, (32,), generator=gen)


def train_steps(model, opt, n=3, sched=None):
    x, y = batch(next(model.parameters()).dtype)
    for _ in range(n):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def loss(model) -> float:
    x, y = batch(next(model.parameters()).dtype)
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-12),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, eps=1e-12, weight_decay=0.0, amsgrad=True),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.5, eps=1e-12),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_loss_preserved_and_one_step_maps(name):
    """widen then deepen: loss unchanged at each growth; the next step is the small model's step, mapped."""
    model = mlp()
    opt = OPTIMIZERS[name](model.parameters())
    train_steps(model, opt)
    x1 = batch()[0][:1]
    for grow in (lambda m: netgrow.widen(m, 2.0, x1, seed=0), lambda m: netgrow.deepen(m, "1", x1)):
        before = loss(model)
        new = grow(model)
        assert abs(loss(new) - before) <= 1e-12 * (1 + abs(before))
        new_opt = netgrow.carry_optimizer(opt, new)
        assert type(new_opt) is type(opt)
        pm = param_map(new)
        w_old, w_new = weights(model), weights(new)
        train_steps(model, opt, n=1)
        train_steps(new, new_opt, n=1)
        kind = "grad" if name == "sgd" else "update"
        checked = 0
        for n, p in new.named_parameters():
            src = pm[n]
            if src.source is None:
                continue  # a fresh parameter (deepen's identity block) has no counterpart
            d_old = model.get_parameter(src.source).detach() - w_old[src.source]
            if kind == "update":  # Adam/RMSprop updates do not scale with the gradient: index only
                src = _index_only(src)
            expected = gather(d_old, src, "grad", p.shape)
            tol = 1e-12 if name == "sgd" else 1e-6 * float(d_old.abs().max())
            assert torch.allclose(p.detach() - w_new[n], expected, atol=tol, rtol=0), (name, n)
            checked += 1
        assert checked >= 6
        model, opt = new, new_opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_follows_the_chain_widen_deepen_expand(name):
    model = mlp(torch.float32)
    opt = OPTIMIZERS[name](model.named_parameters())  # named groups: param_names follow the new names
    train_steps(model, opt)
    x1 = batch(torch.float32)[0][:1]
    a = netgrow.widen(model, 2.0, x1, seed=0)
    b = netgrow.deepen(a, "3", x1)
    c = netgrow.expand_classes(b, 5, x1, seed=0)
    chain = compose(compose(param_map(a), param_map(b)), param_map(c))
    new_opt = netgrow.carry_optimizer(opt, c)
    # the reference: the internal carry with the composed map into a fresh optimizer of the same kind
    ref_opt = OPTIMIZERS[name](c.named_parameters())
    n_ref = carry_optimizer_state(opt, model, ref_opt, c, chain)
    assert n_ref == len(list(model.parameters()))
    ref = {id(p): st for p, st in ref_opt.state.items()}
    assert len(new_opt.state) == n_ref
    for p, st in new_opt.state.items():
        for key, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(ref[id(p)][key])), key
    # every parameter of the grown model is optimised (fresh ones too), hyper-parameters unchanged
    assert {id(p) for g in new_opt.param_groups for p in g["params"]} == {id(p) for p in c.parameters()}
    assert new_opt.param_groups[0]["param_names"] == [n for n, _ in c.named_parameters()]
    for key, value in opt.param_groups[0].items():
        if key not in ("params", "param_names"):
            assert new_opt.param_groups[0][key] == value, key
    before = {id(p): {k: torch.as_tensor(v).clone() for k, v in st.items()} for p, st in opt.state.items()}
    train_steps(c, new_opt, n=1)  # the carried state is usable
    for p, st in opt.state.items():  # the old optimizer is untouched
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), before[id(p)][k])


def test_param_groups_and_training_again_between_growths():
    model = mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": [*model[2].parameters(), *model[4].parameters()], "lr": 0.01}],
                          momentum=0.9, weight_decay=1e-4)
    train_steps(model, opt)
    x1 = batch()[0][:1]
    a = netgrow.widen(model, 2.0, x1, seed=0)
    opt_a = netgrow.carry_optimizer(opt, a)
    train_steps(a, opt_a)  # the optimizer now belongs to `a`; the next growth is found from `a`
    b = netgrow.deepen(a, "1", x1)
    opt_b = netgrow.carry_optimizer(opt_b_src := opt_a, b)
    assert [g["lr"] for g in opt_b.param_groups] == [0.1, 0.01]
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 0.9 for g in opt_b.param_groups)
    names = {id(p): n for n, p in b.named_parameters()}
    group0 = sorted(names[id(p)] for p in opt_b.param_groups[0]["params"])
    # deepen after module "1" inserts the identity block at "1.1"; it joins the group of its neighbour "0"
    assert group0 == sorted(n for n in names.values() if n.startswith(("0.", "1.")))
    assert opt_b_src.param_groups[0]["params"][0] is a[0].weight


def test_frozen_parameters_stay_out():
    model = mlp()
    model[0].weight.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    train_steps(model, opt)
    new = netgrow.widen(model, 2.0, batch()[0][:1], seed=0)
    new_opt = netgrow.carry_optimizer(opt, new)
    assert all(p is not new[0].weight for g in new_opt.param_groups for p in g["params"])
    assert len(new_opt.param_groups[0]["params"]) == len(list(new.parameters())) - 1


def test_same_model_is_a_copy_of_the_optimizer():
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_steps(model, opt)
    new_opt = netgrow.carry_optimizer(opt, model)
    assert new_opt is not opt
    for p in model.parameters():
        assert torch.equal(new_opt.state[p]["exp_avg"], opt.state[p]["exp_avg"])
        assert new_opt.state[p]["exp_avg"] is not opt.state[p]["exp_avg"]


def test_unmappable_optimizers_and_foreign_models_are_refused():
    model = mlp()
    x1 = batch()[0][:1]
    lbfgs = torch.optim.LBFGS(model.parameters())
    with pytest.raises(NetgrowTypeError, match="LBFGS.*supported: SGD, Adam, AdamW, RMSprop"):
        netgrow.carry_optimizer(lbfgs, netgrow.widen(model, 2.0, x1))
    adamax = torch.optim.Adamax(model.parameters())
    train_steps(model, adamax, n=1)
    with pytest.raises(NetgrowTypeError, match="Adamax keeps per-parameter state 'exp_inf'"):
        netgrow.carry_optimizer(adamax, netgrow.widen(model, 2.0, x1))
    other = mlp()
    sgd = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(NetgrowValueError, match="belong neither to new_model nor to a model it was grown from"):
        netgrow.carry_optimizer(sgd, netgrow.widen(model, 2.0, x1))
    with pytest.raises(NetgrowTypeError, match="optimizer must be a torch.optim.Optimizer"):
        netgrow.carry_optimizer(model, model)


@pytest.mark.parametrize("make", [
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10),
    lambda o: torch.optim.lr_scheduler.SequentialLR(o, [torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=3),
                                                        torch.optim.lr_scheduler.ExponentialLR(o, 0.9)], [3]),
], ids=["step", "cosine", "sequential"])
def test_rebound_scheduler_continues_at_the_same_position(make):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = make(opt)
    shadow_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # the uninterrupted schedule
    shadow = make(shadow_opt)
    for _ in range(4):
        train_steps(model, opt, n=1, sched=sched)
        shadow_opt.step()
        shadow.step()
    new = netgrow.widen(model, 2.0, batch()[0][:1], seed=0)
    new_opt = netgrow.carry_optimizer(opt, new)
    assert netgrow.rebind_scheduler(sched, new_opt) is sched and sched.optimizer is new_opt
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()" warning
        for _ in range(6):
            train_steps(new, new_opt, n=1, sched=sched)
            shadow_opt.step()
            shadow.step()
            assert new_opt.param_groups[0]["lr"] == pytest.approx(shadow_opt.param_groups[0]["lr"], rel=1e-12)


def test_rebind_refuses_other_group_counts():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    two = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1)
    with pytest.raises(NetgrowValueError, match="1 param groups but the new one 2"):
        netgrow.rebind_scheduler(sched, two)
    with pytest.raises(NetgrowTypeError, match="lr_scheduler"):
        netgrow.rebind_scheduler(object(), opt)


def test_readme_grow_loop_example_is_about_20_lines():
    """The README example stays short (tests/test_readme.py runs it alone and twice and checks its output)."""
    text = README.read_text()
    section = text[text.index("## Grow inside your own training loop"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 20


def test_lineage_keeps_no_model_alive_and_pickles():
    import gc
    import io
    import weakref

    model = mlp()
    grown = netgrow.widen(model, 2.0, batch()[0][:1], seed=0)
    torch.save(grown, io.BytesIO())  # a grown model still pickles (the lineage's weak references are dropped)
    ref = weakref.ref(model.get_parameter("0.weight"))
    del model
    gc.collect()
    assert ref() is None  # the grown model does not keep its origin's parameters alive
    from netgrow.ops.param_map import lineage

    assert lineage(grown) == []


def test_carry_after_prune_and_models_grow():
    """Lineage is recorded by every op, also prune and the family growth (netgrow.models.grow)."""
    from netgrow import models
    from netgrow.models.grow import grow

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    xs, ys = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs), ys).backward()
        opt.step()
    pruned = netgrow.prune(model, 0.5, xs[:1])
    new_opt = netgrow.carry_optimizer(opt, pruned)
    ref_opt = torch.optim.AdamW(pruned.parameters(), lr=1e-3)
    carry_optimizer_state(opt, model, ref_opt, pruned, param_map(pruned))
    assert len(new_opt.state) == len(ref_opt.state) == len(list(pruned.parameters()))
    for p in pruned.parameters():
        assert torch.equal(new_opt.state[p]["exp_avg_sq"], ref_opt.state[p]["exp_avg_sq"])
    assert pruned[0].out_channels == 4

    vgg = models.create("vgg11", num_classes=3, width=0.0625, in_channels=1, input_size=[8, 8])
    xs = torch.randn(4, 1, 8, 8)
    sgd = torch.optim.SGD(vgg.parameters(), lr=0.01, momentum=0.9)
    sgd.zero_grad()
    nn.functional.cross_entropy(vgg(xs), torch.tensor([0, 1, 2, 0])).backward()
    sgd.step()
    deeper = grow(vgg, "vgg13", xs[:1], data=[xs])
    carried = netgrow.carry_optimizer(sgd, deeper)
    old_names = dict(vgg.named_parameters())
    n = 0
    for name, p in deeper.named_parameters():
        src = param_map(deeper)[name].source
        if src is not None:
            assert torch.equal(carried.state[p]["momentum_buffer"], sgd.state[old_names[src]]["momentum_buffer"])
            n += 1
        else:
            assert p not in carried.state  # the inserted identity layers start fresh
    assert n == len(old_names) and len(list(deeper.parameters())) > n
