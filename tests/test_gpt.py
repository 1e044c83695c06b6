"""The GPT family: structure, exact growth in depth/width/heads/FFN, tied head, maps, Adam carry, MACs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import netgrow
from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.models import GPT, GPTConfig, architecture, create, grow, output_layer
from netgrow.ops.param_map import gather, param_map
from netgrow.spec import growth_log
from netgrow.train.carry import carry_optimizer_state
from netgrow.train.macs import count_macs

V, T = 23, 12
SMALL = dict(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16)


def small(dtype: torch.dtype = torch.float32, seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    m = create("gpt", **{**SMALL, **kw}).to(dtype)
    with torch.no_grad():  # non-trivial LayerNorm affine and biases, so every map is exercised
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return m


def ids(n: int = 3, t: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (n, t), generator=torch.Generator().manual_seed(seed))


def err_and_tol(a: GPT, b: GPT, x: torch.Tensor) -> tuple[float, float]:
    a.eval(), b.eval()
    with torch.no_grad():
        fa, fb = a(x), b(x)
    rel = 1e-10 if fa.dtype == torch.float64 else 1e-5
    return float((fa - fb).abs().max()), rel * (1 + float(fa.abs().max()))


GROWTHS = {
    "depth 2->4": {"n_layer": 4},
    "depth 2->3": {"n_layer": 3},
    "d_model x2": {"n_embd": 32},
    "d_model x3": {"n_embd": 48},
    "heads 2->4": {"n_head": 4},
    "heads 2->3": {"n_head": 3},
    "ffn x2": {"d_ff": 128},
    "ffn 64->100": {"d_ff": 100},
    "all": {"n_layer": 4, "n_embd": 32, "n_head": 4, "d_ff": 128},
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(GROWTHS))
def test_growth_is_exact_and_loads_into_the_bigger_member(name: str, dtype: torch.dtype) -> None:
    m = small(dtype)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    big = grow(m, GROWTHS[name], example_input=ids(2, T, seed=5))
    for x in (ids(4, T, seed=9), ids(3, 7, seed=10)):  # fresh inputs, also a shorter context
        err, tol = err_and_tol(m, big, x)
        assert err <= tol, (name, err, tol)
    cfg = big.config
    for key, value in GROWTHS[name].items():
        assert getattr(cfg, key) == value
    assert cfg.head_dim == 8  # heads are added whole, head_dim fixed
    fresh = create("gpt", **cfg.to_dict())
    fresh.load_state_dict(big.state_dict(), strict=True)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in big.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # the input model is untouched
    assert architecture(big) == "gpt" and growth_log(big)[-1]["function_preserving"] is True


def test_shapes_really_grew_and_the_head_stays_tied() -> None:
    big = grow(small(), GROWTHS["all"], example_input=ids())
    assert big.wte.weight.shape == (V, 32) and big.wpe.weight.shape == (T, 32)
    assert big.blocks[3].attn.c_attn.weight.shape == (3 * 4 * 8, 32)
    assert big.blocks[3].mlp.c_fc.weight.shape == (128, 32)
    assert len(list(big.parameters())) == len(big.state_dict())  # no second head tensor
    assert "lm_head.weight" not in big.state_dict() and output_layer(big) == "wte"
    x = ids()
    with torch.no_grad():  # the head reads wte: changing it changes the logits of every position
        before = big.eval()(x)
        big.wte.weight[:, 0] += 1.0
        assert not torch.allclose(before, big(x))


def test_default_config_is_nanogpt_baby_gpt() -> None:
    cfg = GPTConfig()
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.head_dim, cfg.d_ff) == (6, 6, 384, 256, 64, 1536)
    m = GPT(GPTConfig(vocab_size=65))
    # 12·d² per block + biases/LNs, plus token and position tables (tied head adds nothing)
    per_block = 12 * 384**2 + 9 * 384 + 4 * 384  # weights; biases 3d+d+4d+d; two LNs 2d each
    assert sum(p.numel() for p in m.parameters()) == 6 * per_block + 65 * 384 + 256 * 384 + 2 * 384


def test_every_parameter_of_a_grown_gpt_gets_a_finite_gradient_after_one_step() -> None:
    big = grow(small(), GROWTHS["all"], example_input=ids(), noise=0.1, seed=0)
    opt = torch.optim.AdamW(big.parameters(), lr=1e-2)
    for s in range(2):  # zeroed c_proj of the copies block the gradient of their block until one step
        g = _grads(big, ids(4, T, seed=60 + s), ids(4, T, seed=70 + s))
        opt.step()
    for name, grad in g.items():
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_depth_copies_are_zero_output_copies_and_fresh_for_the_optimizer() -> None:
    m = small()
    big = grow(m, {"n_layer": 4}, example_input=ids())
    pm = param_map(big)
    sd, old = big.state_dict(), m.state_dict()
    for i, (src, is_copy) in enumerate([(0, False), (0, True), (1, False), (1, True)]):
        for key in old:
            if not key.startswith(f"blocks.{src}."):
                continue
            rest = key.split(".", 2)[2]
            new_key = f"blocks.{i}.{rest}"
            if is_copy and ".c_proj." in new_key:
                assert not sd[new_key].any(), new_key
            else:
                assert torch.equal(sd[new_key], old[key]), new_key
            assert (pm[new_key].source is None) == is_copy


def test_stacking_is_recorded_as_not_function_preserving() -> None:
    m = small()
    big = grow(m, {"n_layer": 4}, example_input=ids(), depth="stack")
    assert growth_log(big)[-1]["function_preserving"] is False and growth_log(big)[-1]["depth"] == "stack"
    for i in range(4):
        for key, v in m.blocks[i % 2].state_dict().items():
            assert torch.equal(big.blocks[i].state_dict()[key], v)
    err, tol = err_and_tol(m, big, ids(seed=4))
    assert err > 100 * tol  # stacking changes the function


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_symmetry_breaking_noise_keeps_the_function_and_makes_copies_differ(dtype: torch.dtype) -> None:
    m = small(dtype)
    big = grow(m, {"n_embd": 32, "n_head": 4, "d_ff": 128}, example_input=ids(), noise=0.1, seed=3)
    err, tol = err_and_tol(m, big, ids(5, T, seed=11))
    assert err <= tol
    w = big.blocks[0].mlp.c_proj.weight  # columns j and j + 64 are copies of one old unit
    assert not torch.allclose(w[:, :64], w[:, 64:])
    old_w = m.blocks[0].mlp.c_proj.weight  # the noise cancels over the copies: their sum is the old column
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(w[:, :64] + w[:, 64:], torch.cat([old_w, old_w], 0), atol=tol)
    again = grow(m, {"n_embd": 32, "n_head": 4, "d_ff": 128}, example_input=ids(), noise=0.1, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(big.state_dict().values(), again.state_dict().values()))


def test_param_map_reproduces_every_carried_tensor() -> None:
    m = small(torch.float64)
    big = grow(m, GROWTHS["all"], example_input=ids())
    pm, old = param_map(big), dict(m.named_parameters())
    for name, p in big.named_parameters():
        src = pm[name]
        if src.source is not None:
            assert torch.equal(gather(old[src.source].detach(), src, "weight", p.shape), p.detach()), name


def _grads(model: GPT, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradients_follow_the_map_including_the_tied_embedding_and_ln_f() -> None:
    m = small(torch.float64)
    big = grow(m, {"n_embd": 48, "n_head": 3, "d_ff": 100}, example_input=ids())
    x, y = ids(4, T, seed=20), ids(4, T, seed=21)
    g_old, g_new = _grads(m, x, y), _grads(big, x, y)
    pm = param_map(big)
    for name, g in g_new.items():
        want = gather(g_old[pm[name].source], pm[name], "grad", g.shape)
        assert torch.allclose(g, want, rtol=1e-9, atol=1e-12), name


def test_adamw_moments_are_mapped_exactly_and_keep_following_the_gradient() -> None:
    m = small(torch.float64)
    opt = torch.optim.AdamW(m.named_parameters(), lr=1e-3, weight_decay=0.1)
    for s in range(3):
        _grads(m, ids(4, T, seed=30 + s), ids(4, T, seed=40 + s))
        opt.step()
    big = grow(m, {"n_layer": 3, "n_embd": 32, "n_head": 4, "d_ff": 128}, example_input=ids())
    new_opt = torch.optim.AdamW(big.named_parameters(), lr=1e-3, weight_decay=0.1)
    carried = carry_optimizer_state(opt.state_dict(), m, new_opt, big, param_map(big))
    pm = param_map(big)
    assert carried == sum(1 for n, _ in big.named_parameters() if pm[n].source is not None) > 0
    # one more step on both with the same batch: the new moments are still the mapped old ones
    x, y = ids(4, T, seed=50), ids(4, T, seed=51)
    _grads(m, x, y)
    opt.step()
    _grads(big, x, y)
    new_opt.step()
    old_p = dict(m.named_parameters())
    for name, p in big.named_parameters():
        st = new_opt.state[p]
        if pm[name].source is None:
            assert int(st["step"]) == 1  # a copied block starts fresh
            continue
        ost = opt.state[old_p[pm[name].source]]
        for key, kind in (("exp_avg", "grad"), ("exp_avg_sq", "grad_sq")):
            want = gather(ost[key], pm[name], kind, p.shape)
            assert torch.allclose(st[key], want, rtol=1e-9, atol=1e-15), (name, key)


def test_save_and_load_replay_the_growth() -> None:
    import tempfile
    from pathlib import Path

    big = grow(small(), GROWTHS["all"], example_input=ids(), noise=0.05, seed=1)
    path = Path(tempfile.mkdtemp()) / "g.safetensors"
    netgrow.save(big, path)
    back = netgrow.load(path)
    err, tol = err_and_tol(big, back, ids(seed=7))
    assert err == 0.0 and back.config == big.config


@pytest.mark.parametrize(
    "target, match",
    [
        ({"n_embd": 24}, "not a whole multiple"),
        ({"n_layer": 1}, "smaller than"),
        ({"vocab_size": 30}, "vocab_size cannot change"),
        ({"head_dim": 16}, "head_dim cannot change"),
        ({"n_layer": 2}, "nothing would grow"),
        ({"n_layers": 4}, "no field"),
        ("vgg19", "GPTConfig or a dict"),
    ],
)
def test_refusals_name_the_field_and_the_fix(target, match) -> None:
    with pytest.raises((NetgrowValueError, NetgrowTypeError), match=match):
        grow(small(), target, example_input=ids())


def test_other_refusals() -> None:
    m = small()
    with pytest.raises(NetgrowValueError, match="depth='twice'"):
        grow(m, {"n_layer": 4}, example_input=ids(), depth="twice")
    with pytest.raises(NetgrowValueError, match="BatchNorm"):
        grow(m, {"n_layer": 4}, example_input=ids(), data=[ids()])
    with pytest.raises(NetgrowValueError, match="GPT models only"):
        grow(create("vgg11", width=0.125), "vgg13", example_input=torch.randn(1, 3, 32, 32), depth="copy")
    with pytest.raises(NetgrowValueError, match="vocab_size"):
        create("gpt", num_classes=5)
    with pytest.raises(NetgrowValueError, match="unknown keyword"):
        create("gpt", n_layers=2)
    with pytest.raises(NetgrowValueError, match="unexpected keyword"):
        create("vgg11", n_layer=2)
    with pytest.raises(NetgrowValueError, match="block_size"):
        m(torch.zeros(1, T + 1, dtype=torch.long))
    tampered = small()
    tampered.blocks.append(tampered.blocks[0])
    with pytest.raises(NetgrowValueError, match="no longer match its config"):
        grow(tampered, {"n_layer": 4}, example_input=ids())


def test_count_macs_counts_attention_products_exactly_on_one_block() -> None:
    d, h, hd, ff, t = 16, 2, 8, 64, T
    m = create("gpt", vocab_size=V, block_size=T, n_layer=1, n_head=h, n_embd=d, d_ff=ff)
    by_hand = (
        3 * (t * d) * 3  # three LayerNorms over (t, d), 3 MACs per element
        + t * d * 3 * h * hd  # c_attn
        + h * t * t * hd  # q·kᵀ: every query meets every key (dense, causal mask included)
        + h * t * t * hd  # softmax·v
        + t * h * hd * d  # c_proj
        + t * d * ff + t * ff * d  # MLP
        + t * d * V  # tied head
        + 3 * t * d  # adds: token + position, two residuals
    )
    assert count_macs(m, torch.zeros(2, t, dtype=torch.long)) == by_hand
    per_module = count_macs(m, torch.zeros(1, t, dtype=torch.long), by_module=True)
    assert per_module["<functional>"] == 2 * h * t * t * hd + t * d * V + 3 * t * d


@pytest.mark.parametrize("batch_first", [True, False])
def test_count_macs_of_multihead_attention_by_hand(batch_first: bool) -> None:
    from netgrow.train.macs import module_rule

    e, h, L, S, n = 12, 3, 5, 7, 2
    mha = torch.nn.MultiheadAttention(e, h, kdim=4, vdim=6, batch_first=batch_first)
    shape = (lambda t, d: (n, t, d)) if batch_first else (lambda t, d: (t, n, d))
    q, k, v = torch.randn(*shape(L, e)), torch.randn(*shape(S, 4)), torch.randn(*shape(S, 6))
    by_hand = L * e * e + S * 4 * e + S * 6 * e + L * S * e + L * S * e + L * e * e
    rule = module_rule(mha)
    assert rule is not None and rule(mha, (q, k, v), mha(q, k, v)[0]) == (n * by_hand, None)
    if batch_first:  # count_macs reads the batch from dim 0
        assert count_macs(mha, (q, k, v)) == by_hand
    bias_kv = torch.nn.MultiheadAttention(e, h, add_bias_kv=True, batch_first=True)
    x = torch.randn(n, L, e)
    assert count_macs(bias_kv, (x, x, x)) == 2 * L * e * e + 2 * L * e * e + 2 * L * (L + 1) * e
