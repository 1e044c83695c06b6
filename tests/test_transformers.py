"""Growing transformers by reading their graph: Hugging Face GPT-2 / Llama / BERT (captured with torch.export)
and a nanoGPT-style model (captured with torch.fx).

Every op is checked on inputs other than the example (another batch size and sequence length) to
1e-5 * (1 + max|f|) in float32 (1e-10 in float64), and the tests check that the residual width, the heads
and the FFN really grew, that tied weights are still one parameter and that the input model is untouched.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformer_models import BUILDERS, gpt2, llama, logits, nanogpt, tokens

import netgrow
from netgrow.errors import LockedGroupError, TraceError, VerificationError
from netgrow.graph import analyse
from netgrow.graph.capture import EXPORTED, capture
from netgrow.ops.param_map import map_tensors, param_map
from netgrow.ops.widen import tied_parameters

pytest.importorskip("transformers")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert netgrow.growth_log(model) == [] and param_map(model) is None


def assert_same_function(old: nn.Module, new: nn.Module, rel: float = 1e-5) -> float:
    x = tokens(3, 11, seed=1)  # not the example input: other batch size, other length
    a, b = logits(old, x), logits(new, x)
    err = float((a - b).abs().max())
    assert err <= rel * (1 + float(a.abs().max())), err
    return err


def resizable_widths(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(width in units, channels per unit) of every resizable group, sorted."""
    return sorted((g.width, g.unit) for g in analyse(model, x).groups if g.resizable)


# ------------------------------------------------------------------------------------------ capture
def test_one_capture_path_picks_fx_or_export():
    x = tokens(2, 7, seed=0)
    fx_graph, _ = capture(nanogpt(), x)
    assert not getattr(fx_graph, EXPORTED, False)
    export_graph, _ = capture(gpt2(), x)  # torch.fx cannot trace Hugging Face models
    assert getattr(export_graph, EXPORTED, False)
    # parameters come back by name, and layers as modules
    assert {n.target for n in export_graph.nodes if n.op == "call_module"} >= {"transformer.h.0.attn.c_attn", "lm_head"}
    assert "transformer.wpe.weight" in {n.target for n in export_graph.nodes if n.op == "get_attr"}


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if y.sum() > 0:  # control flow on a tensor value: neither fx nor export can capture it
            return y
        return -y


def test_a_model_neither_capture_handles_names_both_failures():
    with pytest.raises(TraceError) as info:
        analyse(DataDependent(), torch.randn(2, 4))
    message = str(info.value)
    assert "torch.fx could not trace DataDependent" in message and "torch.export failed too" in message


# ------------------------------------------------------------------------------------------ widen
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_widen_x2_preserves_the_function_and_grows_stream_heads_and_ffn(kind):
    model = BUILDERS[kind]()
    x = tokens(2, 7, seed=0)
    before = snapshot(model)
    ties = len(tied_parameters(model))
    old_groups = resizable_widths(model, x)
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)
    assert_untouched(model, before)
    assert_same_function(model, wide)
    # every resizable group doubled its units, and head_dim (the unit of a heads group) stayed
    assert resizable_widths(wide, x) == sorted((w * 2, u) for w, u in old_groups)
    units = {u for _, u in old_groups}
    assert len(units) >= 2, "the model has heads (a unit > 1) and plain channels"
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in model.parameters())
    # tied weights are still one parameter
    assert len(tied_parameters(wide)) == ties
    assert ties >= 1


def test_widened_gpt2_has_twice_the_stream_heads_and_ffn():
    model = gpt2()
    wide = netgrow.widen(model, 2.0, example_input=tokens(2, 7, seed=0), seed=3)
    attn, mlp = wide.transformer.h[0].attn, wide.transformer.h[0].mlp
    assert wide.transformer.wte.weight.shape == (50, 64) and wide.transformer.wpe.weight.shape == (32, 64)
    assert attn.c_attn.weight.shape == (64, 192) and attn.c_proj.weight.shape == (64, 64)
    assert attn.split_size == 64 and attn.head_dim == 8  # the split size follows; heads keep their size
    assert mlp.c_fc.weight.shape == (64, 256) and wide.lm_head.weight is wide.transformer.wte.weight


def test_llama_gqa_groups_swiglu_and_rmsnorm():
    model = llama()
    x = tokens(2, 7, seed=0)
    graph = analyse(model, x)
    heads = graph.producer_group("model.layers.0.self_attn.q_proj")
    # one unit = one key/value head with the 2 query heads that share it (16 query channels)
    assert heads is graph.producer_group("model.layers.0.self_attn.k_proj") and (heads.width, heads.unit) == (2, 16)
    assert graph.producer_group("model.layers.0.mlp.gate_proj") is graph.producer_group("model.layers.0.mlp.up_proj")
    assert graph.modules["model.norm.weight"].kind == "param"  # RMSNorm's weight is used functionally
    wide = netgrow.widen(model, 2.0, example_input=x, seed=1)
    layer = wide.model.layers[0]
    assert layer.self_attn.q_proj.out_features == 64 and layer.self_attn.k_proj.out_features == 32
    assert layer.self_attn.head_dim == 8 and layer.self_attn.num_key_value_groups == 2
    assert layer.mlp.gate_proj.out_features == layer.mlp.up_proj.out_features == 128
    assert wide.model.norm.weight.shape == (64,) and wide.lm_head.weight is wide.model.embed_tokens.weight
    assert_same_function(model, wide)


@pytest.mark.parametrize("kind", ["nanogpt", "llama"])
def test_widen_is_exact_in_float64(kind):
    model = BUILDERS[kind]().double()
    wide = netgrow.widen(model, 2.0, example_input=tokens(2, 7, seed=0), seed=2)
    assert_same_function(model, wide, rel=1e-10)


def test_dict_form_names_a_producer_of_each_group():
    model = nanogpt()
    x = tokens(2, 7, seed=0)
    wide = netgrow.widen(model, {"blocks.0.mlp.0": 160, "blocks.1.attn.c_attn": 6}, example_input=x, seed=0)
    assert wide.blocks[0].mlp[0].out_features == 160 and wide.blocks[0].attn.c_attn.out_features == 96
    assert wide.blocks[1].attn.c_attn.out_features == 3 * 6 * 8 and wide.blocks[1].attn.c_proj.in_features == 48
    assert wide.wte.weight.shape == (50, 32)  # the residual stream was not named: unchanged
    assert_same_function(model, wide)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "nanogpt"])
def test_param_map_reproduces_the_new_weights(kind):
    model = BUILDERS[kind]()
    wide = netgrow.widen(model, 2.0, example_input=tokens(2, 7, seed=0), seed=0)
    new = dict(wide.named_parameters())
    mapped = map_tensors(param_map(wide), dict(model.named_parameters()), {k: v.shape for k, v in new.items()}, "weight")
    for name, t in new.items():
        torch.testing.assert_close(mapped[name], t.detach(), rtol=0, atol=0, msg=name)


# ------------------------------------------------------------------------------------------ refusals
def test_nanogpts_own_attention_code_grows_its_attributes_with_it():
    model = nanogpt(style="nanogpt")  # split(self.n_embd), view(B, T, self.n_head, C // self.n_head), view(B, T, C)
    x = tokens(2, 7, seed=0)
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)
    attn = wide.blocks[0].attn
    assert (attn.n_embd, attn.n_head, attn.c_attn.out_features) == (64, 8, 192)  # the attributes follow
    assert_same_function(model, wide)
    # heads alone cannot grow: the view takes head_dim from the stream's width (C // n_head)
    with pytest.raises(VerificationError, match="no longer runs"):
        netgrow.widen(model, {"blocks.0.attn.c_attn": 8}, example_input=x, seed=0)


def test_nanogpts_manual_attention_is_captured_by_export_and_grows_exactly():
    model = nanogpt(style="manual")
    x = tokens(2, 7, seed=0)
    graph, _ = capture(model, x)
    assert getattr(graph, EXPORTED, False)  # math.sqrt(k.size(-1)) defeats torch.fx
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)
    assert wide.blocks[1].attn.n_head == 8 and wide.blocks[1].attn.c_attn.out_features == 192
    assert_same_function(model, wide)


def test_a_constant_head_count_is_refused_with_a_reason_naming_the_node():
    model = nanogpt(style="constant")  # view(B, T, 4, head_dim) with 4 from no attribute of the module
    x = tokens(2, 7, seed=0)
    group = analyse(model, x).producer_group("blocks.0.attn.c_attn")
    assert group.locked and "at node 'view'" in group.reason and "-1" in group.reason
    with pytest.raises(LockedGroupError, match="at node 'view'"):
        netgrow.widen(model, {"blocks.0.attn.c_attn": 192}, example_input=x)
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)  # the rest still grows: stream and FFN
    assert wide.blocks[0].mlp[0].out_features == 256 and wide.blocks[0].attn.c_attn.out_features == 96
    assert_same_function(model, wide)


class UntiedSum(nn.Module):
    """A tie netgrow cannot keep: the head reads the embedding output directly (no norm to take the division)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx)
        return self.head(h + self.fc(h))


def test_a_tie_that_cannot_be_kept_is_refused():
    model = UntiedSum()
    with pytest.raises(netgrow.NetgrowValueError, match="tied parameter emb.weight, head.weight"):
        netgrow.widen(model, {"emb": 16}, example_input=torch.randint(0, 10, (2, 5)))


# ------------------------------------------------------------------------------------------ deepen by copy
BLOCKS = {"nanogpt": ("blocks", "blocks.0"), "gpt2": ("transformer.h", "transformer.h.0"),
          "llama": ("model.layers", "model.layers.1"), "bert": ("bert.encoder.layer", "bert.encoder.layer.0")}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_deepen_by_copy_preserves_the_function_and_runs_the_copy(kind):
    model = BUILDERS[kind]()
    layers, after = BLOCKS[kind]
    x = tokens(2, 7, seed=0)
    before = snapshot(model)
    n = len(model.get_submodule(layers))
    deep = netgrow.deepen(model, after, example_input=x, kind="copy")
    assert_untouched(model, before)
    assert_same_function(model, deep)
    stack = deep.get_submodule(layers)
    assert len(stack) == n + 1  # the module list grew in place: the model's own forward runs the copy
    calls = []
    stack[int(after.rsplit(".", 1)[1]) + 1].register_forward_hook(lambda *_: calls.append(1))
    logits(deep, tokens(1, 5, seed=2))
    assert calls == [1]
    config = getattr(deep, "config", None)
    if config is not None:
        assert config.num_hidden_layers == n + 1 and model.config.num_hidden_layers == n
    assert len(tied_parameters(deep)) == len(tied_parameters(model))
    # the copy starts from the block's weights, except the zeroed residual-branch outputs (fresh state)
    pm = param_map(deep)
    copied = [k for k, src in pm.items() if k.startswith(f"{layers}.{int(after.rsplit('.', 1)[1]) + 1}.")]
    assert copied and any(pm[k].source is None for k in copied) and any(pm[k].source for k in copied)


def test_plain_stacking_changes_the_function_and_says_so(caplog):
    model = nanogpt()
    x = tokens(2, 7, seed=0)
    with caplog.at_level("INFO", logger="netgrow.ops.deepen_copy"):
        deep = netgrow.deepen(model, "blocks.1", example_input=x, kind="copy", zero_output=False)
    assert "plain stacking" in caplog.text and "verification skipped" in caplog.text
    assert float((logits(model, x) - logits(deep, x)).abs().max()) > 1e-3
    assert torch.equal(deep.blocks[2].attn.c_proj.weight, model.blocks[1].attn.c_proj.weight)
    assert netgrow.growth_log(deep)[-1]["zero_output"] is False


def test_deepen_by_copy_of_a_resnet_basic_block_is_exact():
    from netgrow import models

    model = models.create("resnet20", num_classes=10).double().eval()
    with torch.no_grad():  # non-trivial BatchNorms, so the zeroed bn2 has to matter
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    deep = netgrow.deepen(model, "layer1.1", example_input=x, kind="copy")
    y = torch.randn(3, 3, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        a, b = model(y), deep(y)
    assert float((a - b).abs().max()) <= 1e-10 * (1 + float(a.abs().max()))
    assert len(deep.layer1) == 4
    assert not deep.layer1[2].bn2.weight.any() and deep.layer1[2].conv2.weight.any()  # zero-init residual


def test_deepen_by_copy_refuses_a_post_norm_block_that_is_not_the_identity():
    model = BUILDERS["bert"]()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.5, 0.5)
    with pytest.raises(VerificationError, match="deepen by copying 'bert.encoder.layer.0'"):
        netgrow.deepen(model, "bert.encoder.layer.0", example_input=tokens(2, 7, seed=0), kind="copy")


def test_deepen_by_copy_refuses_a_block_that_changes_the_shape():
    with pytest.raises(netgrow.NetgrowValueError, match="output shape"):
        netgrow.deepen(nanogpt(), "blocks.0.mlp.0", example_input=tokens(2, 7, seed=0), kind="copy")


# ------------------------------------------------------------------------------------------ prune
def _kill(rows: torch.Tensor, cols: torch.Tensor, dead: list[int], unit: int, bias: torch.Tensor | None = None):
    """Zero the incoming rows and outgoing columns of the ``dead`` units (``unit`` channels each)."""
    with torch.no_grad():
        for u in dead:
            rows[u * unit : (u + 1) * unit] = 0
            cols[:, u * unit : (u + 1) * unit] = 0
            if bias is not None:
                bias[u * unit : (u + 1) * unit] = 0


def test_prune_removes_the_weakest_whole_heads_and_ffn_units_of_a_gpt():
    model = nanogpt()
    for block in model.blocks:  # heads 1 and 3 and half of the FFN units contribute nothing
        qkv = block.attn.c_attn
        for part in range(3):
            _kill(qkv.weight[part * 32 : (part + 1) * 32], block.attn.c_proj.weight, [1, 3], 8,
                  qkv.bias[part * 32 : (part + 1) * 32])  # fmt: skip
        _kill(block.mlp[0].weight, block.mlp[2].weight, list(range(0, 128, 2)), 1, block.mlp[0].bias)
    x = tokens(2, 7, seed=0)
    before = snapshot(model)
    small = netgrow.prune(model, 0.5, example_input=x, layers="linear")
    assert_untouched(model, before)
    assert small.blocks[0].attn.c_attn.out_features == 3 * 2 * 8 and small.blocks[0].attn.c_proj.in_features == 16
    assert small.blocks[0].mlp[0].out_features == 64 and small.wte.weight.shape == (50, 32)  # the stream stays
    assert_same_function(model, small)  # only dead units went: exactly the same function
    record = netgrow.growth_log(small)[-1]
    assert record["widths"]["blocks.0.attn.c_attn"] == 2 and record["layers"] == "linear"


def test_prune_keeps_gqa_groups_consistent():
    model = llama()
    for layer in model.model.layers:  # key/value head 1 and the query heads 2, 3 that read it are dead
        attn = layer.self_attn
        _kill(attn.q_proj.weight, attn.o_proj.weight, [2, 3], 8)
        with torch.no_grad():
            attn.k_proj.weight[8:] = 0
            attn.v_proj.weight[8:] = 0
        mlp = layer.mlp  # and half of the SwiGLU units: gate and up rows go together
        _kill(mlp.gate_proj.weight, mlp.down_proj.weight, list(range(32, 64)), 1)
        _kill(mlp.up_proj.weight, mlp.down_proj.weight, list(range(32, 64)), 1)
    small = netgrow.prune(model, 0.5, example_input=tokens(2, 7, seed=0), layers="linear")
    attn = small.model.layers[0].self_attn
    assert attn.q_proj.out_features == 16 and attn.k_proj.out_features == attn.v_proj.out_features == 8
    assert attn.o_proj.in_features == 16 and small.model.layers[0].mlp.down_proj.in_features == 32
    assert_same_function(model, small)


def test_prune_of_hugging_face_gpt2_runs_with_the_new_split_size():
    small = netgrow.prune(gpt2(), 0.25, example_input=tokens(2, 7, seed=0), layers="linear")
    attn = small.transformer.h[0].attn
    assert attn.c_attn.weight.shape == (32, 3 * 3 * 8) and attn.split_size == 24
    assert logits(small, tokens(3, 11, seed=1)).shape == (3, 11, 50)


# ------------------------------------------------------------------------------------------ optimizer state
def lm_grads(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the next-token loss (eval mode: dropout off, so both models see the same function)."""
    model.eval()
    model.zero_grad()
    out = logits_with_grad(model, x)
    torch.nn.functional.cross_entropy(out[:, :-1].flatten(0, 1), x[:, 1:].flatten()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def logits_with_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize("kind", ["nanogpt", "gpt2", "llama"])
def test_adamw_moments_follow_the_gradient_correspondence_after_widening(kind):
    from netgrow.ops.param_map import gather
    from netgrow.train.carry import carry_optimizer_state

    model = BUILDERS[kind]().double()
    opt = torch.optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.01)
    data = [tokens(4, 9, seed=s) for s in range(4)]
    for x in data[:3]:
        lm_grads(model, x)
        opt.step()
    wide = netgrow.widen(model, 2.0, example_input=data[0], seed=0)
    pm = param_map(wide)
    # right after the exact widen: a unit replicated c times gets 1/c of the gradient on its incoming weights
    # (and norm/embedding entries), a divided fan-in column the same gradient; the tied embedding both at once
    g_old, g_new = lm_grads(model, data[3]), lm_grads(wide, data[3])
    assert g_new.keys() == {n for n, _ in wide.named_parameters()}
    for n, g in g_new.items():
        torch.testing.assert_close(g, gather(g_old[pm[n].source], pm[n], "grad", g.shape), rtol=0, atol=1e-9, msg=n)
    new_opt = torch.optim.AdamW(wide.named_parameters(), lr=1e-3, weight_decay=0.01)
    carry_optimizer_state(opt.state_dict(), model, new_opt, wide, pm)
    old_params, new_params = dict(model.named_parameters()), dict(wide.named_parameters())
    for when in ("carried", "after one more step"):
        if when != "carried":
            opt.step(), new_opt.step()
        for n, p in new_params.items():
            old_state, new_state = opt.state[old_params[pm[n].source]], new_opt.state[p]
            for key, kind_ in (("exp_avg", "grad"), ("exp_avg_sq", "grad_sq")):  # m by 1/c, v by 1/c^2
                expected = gather(old_state[key], pm[n], kind_, p.shape)
                torch.testing.assert_close(new_state[key], expected, rtol=1e-9, atol=1e-12, msg=f"{n} {key} {when}")


# ------------------------------------------------------------------------------------------ nn.MultiheadAttention
class Encoder(nn.Module):
    """Pre-LN encoder layer on nn.MultiheadAttention (one composite rule), then a read-out."""

    def __init__(self, d: int = 16, heads: int = 4, batch_first: bool = True):
        super().__init__()
        self.emb = nn.Linear(6, d)
        self.ln = nn.LayerNorm(d)
        self.mha = nn.MultiheadAttention(d, heads, batch_first=batch_first)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 3)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x if self.batch_first else x.transpose(0, 1))
        y = self.ln(h)
        a, _ = self.mha(y, y, y, need_weights=False)
        h = h + a
        h = h + self.ff(h)
        return self.head(h)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_grows_whole_heads_with_its_input(batch_first):
    torch.manual_seed(0)
    model = Encoder(batch_first=batch_first).double().eval()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    graph = analyse(model, x)
    stream = graph.producer_group("emb")  # the query width is embed_dim = heads x head_dim: one group of heads
    assert (stream.width, stream.unit) == (4, 4) and stream.resizable
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)
    mha = wide.mha
    assert (mha.embed_dim, mha.num_heads, mha.head_dim) == (32, 8, 4) and mha.in_proj_weight.shape == (96, 32)
    assert mha.out_proj.weight.shape == (32, 32) and wide.ff[0].out_features == 64
    y = torch.randn(3, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        a, b = model(y), wide(y)
    assert float((a - b).abs().max()) <= 1e-10 * (1 + float(a.abs().max()))


def test_multihead_attention_weights_that_are_used_lock_the_heads():
    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.mha = nn.Linear(6, 8), nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            h = self.emb(x)
            out, weights = self.mha(h, h, h)
            return out.sum(-1) + weights.sum(-1)

    group = analyse(Weights(), torch.randn(2, 5, 6)).producer_group("emb")
    assert group.locked and "head-averaged attention weights" in group.reason


# ------------------------------------------------------------------------------------------ the growth log
@pytest.mark.parametrize("kind,block", [("gpt2", "transformer.h.0"), ("llama", "model.layers.0")])
def test_a_grown_transformer_saves_and_loads_by_replaying_its_log(kind, block, tmp_path):
    x = tokens(2, 7, seed=0)
    grown = netgrow.widen(BUILDERS[kind](), 2.0, example_input=x, seed=0)
    grown = netgrow.deepen(grown, block, example_input=x, kind="copy")
    grown = netgrow.prune(grown, 0.25, example_input=x, layers="linear")
    assert [r["op"] for r in netgrow.growth_log(grown)] == ["widen", "deepen", "prune"]
    netgrow.save(grown, tmp_path / "grown.safetensors")
    loaded = netgrow.load(tmp_path / "grown.safetensors", base=BUILDERS[kind]())
    y = tokens(3, 11, seed=1)
    assert torch.equal(logits(grown, y), logits(loaded, y))


def test_the_stream_grows_only_by_whole_multiples(caplog):
    model, x = nanogpt(), tokens(2, 7, seed=0)
    with pytest.raises(netgrow.NetgrowValueError, match="not a whole multiple of its width 32"):
        netgrow.widen(model, {"wte": 48}, example_input=x)
    with caplog.at_level("WARNING", logger="netgrow.ops.widen"):
        wide = netgrow.widen(model, 1.5, example_input=x, seed=0)  # heads 4 -> 6, FFN 128 -> 192, stream kept
    assert "keeps width 32" in caplog.text
    assert wide.wte.weight.shape == (50, 32) and wide.blocks[0].attn.c_attn.out_features == 3 * 6 * 8
    assert wide.blocks[0].mlp[0].out_features == 192
    assert_same_function(model, wide)


@pytest.mark.parametrize("family", ["qwen2", "gpt_neox", "opt", "gemma_untied"])
def test_more_hugging_face_families_widen_exactly(family):
    from transformer_models import more_families

    torch.manual_seed(0)
    model = more_families()[family]().eval()
    x = tokens(2, 7, seed=0)
    old = resizable_widths(model, x)
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)
    assert_same_function(model, wide)
    assert resizable_widths(wide, x) == sorted((w * 2, u) for w, u in old) and any(u > 1 for _, u in old)


def test_a_tie_behind_a_one_plus_weight_norm_is_refused_not_broken():
    from transformer_models import more_families

    torch.manual_seed(0)
    model = more_families()["gemma"]().eval()  # Gemma's final norm scales by (1 + w): it cannot take 1/c
    with pytest.raises(netgrow.NetgrowValueError, match="tied parameter model.embed_tokens.weight, lm_head.weight"):
        netgrow.widen(model, 2.0, example_input=tokens(2, 7, seed=0), seed=0)


def test_hugging_face_vit_grows_its_stream_through_patch_conv_class_token_and_positions():
    import transformers as T

    torch.manual_seed(0)
    model = T.ViTForImageClassification(T.ViTConfig(
        image_size=16, patch_size=8, num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
        num_labels=5)).eval()  # fmt: skip
    x = torch.randn(2, 3, 16, 16)
    stream = analyse(model, x).producer_group("vit.embeddings.patch_embeddings.projection")
    assert stream.resizable and "vit.embeddings.cls_token" in stream.passthrough
    wide = netgrow.widen(model, 2.0, example_input=x, seed=0)
    assert wide.vit.embeddings.cls_token.shape == (1, 1, 64) and wide.vit.embeddings.position_embeddings.shape[-1] == 64
    y = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        a, b = model(y).logits, wide(y).logits
    assert float((a - b).abs().max()) <= 1e-5 * (1 + float(a.abs().max()))
    small = netgrow.prune(model, 0.25, example_input=x, layers="linear")  # heads 4 -> 3, FFN 64 -> 48
    assert small.vit.layers[0].attention.q_proj.out_features == 24 and small.vit.layers[0].mlp.fc1.out_features == 48


def test_prune_by_default_prunes_conv_filters_only_and_points_to_linear_units(caplog):
    model, x = nanogpt(), tokens(2, 7, seed=0)
    with caplog.at_level("WARNING", logger="netgrow.ops.prune"):
        same = netgrow.prune(model, 0.5, example_input=x)
    assert "layers='linear'" in caplog.text
    assert same.blocks[0].mlp[0].out_features == 128 and same.blocks[0].attn.c_attn.out_features == 96
