"""Exact growth of a netgrow GPT in depth (blocks), width (d_model), heads and FFN hidden units.

``grow_gpt(model, target, example_input)`` returns a GPT whose state_dict keys and shapes are those of a
fresh ``create("gpt", **target)``, computing the same function (checked on ``example_input``). The maps,
with k = new n_embd / old n_embd (a whole number), every map cyclic (new unit j copies old unit j mod n):

- **residual stream (d_model)**: the token and positional embeddings and every producer into the stream
  (attention ``c_proj`` and MLP ``c_proj`` rows and biases) are tiled, so the stream becomes
  ``[x, x, ..., x]``; its LayerNorms (``ln_1``, ``ln_2``) are tiled too, which is exact because tiling keeps
  the mean and the variance over the stream. Consumers of the stream (``c_attn``, ``c_fc`` columns) are
  divided by k. Non-multiples are refused: no map keeps a LayerNorm's statistics then.
- **tied head**: the head is the token embedding, which the stream needs tiled *undivided*; read through
  it, ``tile(ln_f(x))`` would give k times the logits. So ``ln_f``'s weight and bias are divided by k
  instead (``ln_f`` feeds only the head): logits unchanged, and the embedding stays one parameter. Its
  gradient then maps with 1/k from both uses (input embedding and head), so Adam's moments map exactly.
- **heads**: whole heads are added with ``head_dim`` fixed; new head h copies head h mod n_head
  (its q, k, v rows of ``c_attn``), and ``c_proj``'s columns of a head copied c times are divided by c.
- **FFN**: ``c_fc`` rows and biases copied, ``c_proj`` columns divided by the copy count.
- **depth** (``depth="copy"``): block i of the n' new blocks comes from old block ``floor(i·n/n')`` (each
  original followed by its copies); a copy has its residual-branch outputs (attention and MLP ``c_proj``,
  weight and bias) zeroed, so it adds nothing: exact. ``depth="stack"`` (G_stack / MIDAS): new block i is
  a full copy of old block ``i mod n``; not function-preserving, so it is not verified and the growth
  record says ``"function_preserving": false``.

Copies of a unit receive identical gradients and would stay identical forever. ``noise > 0`` breaks the
symmetry without changing the function: every divided consumer slice gets Gaussian noise of std
``noise · std(W)`` that sums to zero over the copies of each unit (``ln_f`` too, on the head's side), so
the function is still exact up to float rounding while the copies' producers then receive different
gradients.

The ``ParamMap`` attached to the result (``netgrow.ops.param_map``): copied/tiled slices ``w = 1,
g = 1/c``, divided slices ``w = 1/c, g = 1``, ``ln_f`` ``w = 1/k, g = 1``; copied blocks (zeroed or
stacked) are fresh (``source=None``: the optimizer starts them with zero moments). The record
``{"op": "grow", "target": "gpt", "config": {...}, "depth", "noise", "seed", "function_preserving"}``
replays through ``netgrow.models.grow``'s ``replay``.

    >>> import torch
    >>> from netgrow.models import create, grow
    >>> small = create("gpt", vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16)
    >>> x = torch.randint(0, 16, (2, 8))
    >>> big = grow(small, {"n_layer": 2, "n_embd": 32, "n_head": 4, "d_ff": 128}, example_input=x)
    >>> big.config.n_embd, big.config.head_dim, bool((big(x) - small(x)).abs().max() < 1e-5)
    (32, 8, True)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.models.gpt import GPT, GPTConfig, gpt_config
from netgrow.ops.param_map import DimMap, ParamMap, ParamSource, gather, set_param_map
from netgrow.ops.verify import verify_preserved
from netgrow.spec import append_record, get_spec, set_spec

log = logging.getLogger(__name__)

DEPTH_MODES = ("copy", "stack")
_FIXED = ("vocab_size", "block_size", "head_dim", "dropout", "bias")


def target_config(model: nn.Module, target: GPTConfig | Mapping[str, Any]) -> GPTConfig:
    """The bigger GPT config ``target`` names (a ``GPTConfig``, or the fields that change), validated."""
    cfg = gpt_config(model)
    if isinstance(target, GPTConfig):
        new = target
    elif isinstance(target, Mapping):
        changes = dict(target)
        if "n_embd" in changes and "d_ff" not in changes:
            changes["d_ff"] = cfg.d_ff * changes["n_embd"] // cfg.n_embd  # type: ignore[operator]
        changes.setdefault("head_dim", cfg.head_dim)
        new = cfg.replace(**changes)
    else:
        raise NetgrowTypeError(
            f"grow: a GPT's target is a GPTConfig or a dict of the fields that grow (e.g. {{'n_layer': 4}}), "
            f"got {type(target).__name__}"
        )
    for key in _FIXED:
        if getattr(new, key) != getattr(cfg, key):
            raise NetgrowValueError(
                f"grow: {key} cannot change ({getattr(cfg, key)!r} -> {getattr(new, key)!r}); GPT growth keeps "
                f"{list(_FIXED)} (heads are added whole with head_dim fixed)"
            )
    for key in ("n_layer", "n_embd", "n_head", "d_ff"):
        if getattr(new, key) < getattr(cfg, key):
            raise NetgrowValueError(
                f"grow: {key}={getattr(new, key)} is smaller than the model's {getattr(cfg, key)}; growth only adds "
                f"(use netgrow.prune to remove units)"
            )
    if new.n_embd % cfg.n_embd:
        raise NetgrowValueError(
            f"grow: n_embd {cfg.n_embd} -> {new.n_embd} is not a whole multiple; the residual stream is normalised "
            f"by LayerNorms, which stay exact only when every unit is copied equally often. Use n_embd = k·"
            f"{cfg.n_embd}"
        )
    if new == cfg:
        raise NetgrowValueError(f"grow: the target {new.to_dict()} equals the model's config; nothing would grow")
    return new


def _check_shapes(model: nn.Module, cfg: GPTConfig) -> None:
    """The model's tensors still have its config's shapes (a generic widen/prune would break that)."""
    with torch.device("meta"):
        ref = GPT(cfg)
    want = {n: tuple(t.shape) for n, t in ref.state_dict().items()}
    have = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or [n for n in want if want[n] != have[n]]
        raise NetgrowValueError(
            f"grow: this GPT's tensors no longer match its config {cfg.to_dict()} (e.g. {diff[:3]}); it was "
            "changed by an op outside the GPT growth path, which grow cannot continue from"
        )


class _WidthMaps:
    """The per-dimension maps of one width growth (stream, heads, FFN)."""

    def __init__(self, old: GPTConfig, new: GPTConfig):
        self.k = new.n_embd // old.n_embd
        self.stream = self._cyclic(old.n_embd, new.n_embd)
        hd = old.head_dim  # type: ignore[assignment]
        head_of = self._cyclic(old.n_head, new.n_head)[0]
        unit = torch.arange(new.n_head * hd)  # type: ignore[operator]
        inner_index = head_of[unit // hd] * hd + unit % hd
        self.inner = (inner_index, torch.bincount(inner_index, minlength=old.n_head * hd))  # type: ignore[operator]
        old_inner = old.n_head * hd  # type: ignore[operator]
        self.qkv = (
            torch.cat([inner_index + s * old_inner for s in range(3)]),
            torch.cat([self.inner[1]] * 3),
        )
        self.ffn = self._cyclic(old.d_ff, new.d_ff)  # type: ignore[arg-type]

    @staticmethod
    def _cyclic(n_old: int, n_new: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(n_new) % n_old
        return index, torch.bincount(index, minlength=n_old)

    def dims(self, name: str) -> list[DimMap]:
        """The DimMaps of tensor ``name`` (block-relative names like ``attn.c_attn.weight``)."""
        s, i, q, f = self.stream, self.inner, self.qkv, self.ffn
        rep = DimMap.replicate
        if name in ("wte.weight", "wpe.weight"):
            return [rep(1, s[0], s[1], "out")]
        if name.startswith("ln_f."):  # divided by k: the tied head reads the stream undivided
            return [rep(0, s[0], s[1], "in")]
        leaf = name.split(".", 2)[2] if name.startswith("blocks.") else name
        table: dict[str, list[DimMap]] = {
            "ln_1.weight": [rep(0, s[0], s[1], "pass")],
            "ln_1.bias": [rep(0, s[0], s[1], "pass")],
            "ln_2.weight": [rep(0, s[0], s[1], "pass")],
            "ln_2.bias": [rep(0, s[0], s[1], "pass")],
            "attn.c_attn.weight": [rep(0, q[0], q[1], "out"), rep(1, s[0], s[1], "in")],
            "attn.c_attn.bias": [rep(0, q[0], q[1], "out")],
            "attn.c_proj.weight": [rep(0, s[0], s[1], "out"), rep(1, i[0], i[1], "in")],
            "attn.c_proj.bias": [rep(0, s[0], s[1], "out")],
            "mlp.c_fc.weight": [rep(0, f[0], f[1], "out"), rep(1, s[0], s[1], "in")],
            "mlp.c_fc.bias": [rep(0, f[0], f[1], "out")],
            "mlp.c_proj.weight": [rep(0, s[0], s[1], "out"), rep(1, f[0], f[1], "in")],
            "mlp.c_proj.bias": [rep(0, s[0], s[1], "out")],
        }
        if leaf not in table:
            raise NetgrowValueError(f"grow: no GPT growth map for tensor {name!r}")
        return table[leaf]


def _cancelling_noise(t: torch.Tensor, dm: DimMap, std: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise on ``t`` that sums to zero over the copies of each old unit along ``dm.dim``."""
    x = t.movedim(dm.dim, -1)
    eta = torch.randn(x.shape, generator=gen, dtype=torch.float64) * std
    index = dm.index.clamp(min=0)
    n_old = int(index.max()) + 1
    counts = torch.bincount(index, minlength=n_old).to(torch.float64)
    sums = torch.zeros(*x.shape[:-1], n_old, dtype=torch.float64).index_add_(-1, index, eta)
    eta = eta - (sums / counts)[..., index]  # a unit copied once gets exactly zero
    return (x + eta.to(device=t.device, dtype=t.dtype)).movedim(-1, dm.dim)


def _layer_sources(n_old: int, n_new: int, depth: str) -> list[tuple[int, bool]]:
    """For each new block: (old block it comes from, whether it is a copy rather than the original)."""
    if depth == "copy":
        src = [i * n_old // n_new for i in range(n_new)]
    else:
        src = [i % n_old for i in range(n_new)]
    seen: set[int] = set()
    out = []
    for s in src:
        out.append((s, s in seen))
        seen.add(s)
    return out


def grow_gpt(
    model: nn.Module,
    target: GPTConfig | Mapping[str, Any],
    example_input: torch.Tensor,
    depth: str = "copy",
    noise: float = 0.0,
    seed: int | None = None,
    verify: bool = True,
) -> GPT:
    """A copy of GPT ``model`` grown to ``target`` (see the module docstring); the input model is untouched.

    ``target``: a ``GPTConfig`` or the fields that grow (``{"n_layer": 4, "n_embd": 256, "n_head": 8,
    "d_ff": 1024}``; ``d_ff`` follows ``n_embd`` when not given). ``depth``: ``"copy"`` (zero-output copies,
    exact) or ``"stack"`` (plain stacking, not verified). ``noise``: std of the function-preserving
    symmetry-breaking noise, relative to each divided weight's std. ``seed``: the noise's generator
    (``None`` draws one and records it). ``verify``: check the function on ``example_input`` (eval mode).
    """
    if depth not in DEPTH_MODES:
        raise NetgrowValueError(f"grow: depth={depth!r} is invalid; use one of {list(DEPTH_MODES)}")
    if not noise >= 0:
        raise NetgrowValueError(f"grow: noise={noise!r} is invalid; use a number >= 0")
    old_cfg = gpt_config(model)
    _check_shapes(model, old_cfg)
    new_cfg = target_config(model, target)
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 2:
        raise NetgrowValueError(
            "grow: example_input must be token ids of shape (batch, T) for a GPT, got "
            f"{getattr(example_input, 'shape', type(example_input).__name__)}"
        )
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if noise > 0 else 0
    gen = torch.Generator().manual_seed(int(seed))
    maps = _WidthMaps(old_cfg, new_cfg)
    old_tensors = dict(model.named_parameters())
    ref = next(iter(old_tensors.values()))

    with torch.device("meta"):
        new = GPT(new_cfg)
    new = new.to_empty(device=ref.device).to(ref.dtype)
    new.train(model.training)
    pm: ParamMap = {}
    layers = _layer_sources(old_cfg.n_layer, new_cfg.n_layer, depth)
    for name, p in new.named_parameters():
        src_name = name
        copy = False
        if name.startswith("blocks."):
            _, i, rest = name.split(".", 2)
            src_layer, copy = layers[int(i)]
            src_name = f"blocks.{src_layer}.{rest}"
        dims = maps.dims(name)
        old = old_tensors[src_name]
        value = gather(old.detach(), ParamSource(src_name, dims), "weight", p.shape)
        if noise > 0:
            for dm in dims:
                if bool((dm.weight_scale < 1).any()) and old.numel() > 1:  # a divided (consumer) dim
                    value = _cancelling_noise(value, dm, noise * float(old.detach().double().std()), gen)
        if copy and depth == "copy" and ".c_proj." in name:
            value = torch.zeros_like(value)  # the copy's residual branch outputs nothing
        p.data = value.contiguous()
        p.requires_grad_(old.requires_grad)
        pm[name] = ParamSource(None) if copy else ParamSource(src_name, dims)
    # copies must equal their (noised) originals, not independently noised versions: copy them over
    if noise > 0:
        params = dict(new.named_parameters())
        for i, (s, copy) in enumerate(layers):
            if not copy:
                continue
            first = next(j for j, (s2, c2) in enumerate(layers) if s2 == s and not c2)
            for rest in [n.split(".", 2)[2] for n in params if n.startswith(f"blocks.{i}.")]:
                if depth == "copy" and ".c_proj." in f".{rest}":
                    continue
                params[f"blocks.{i}.{rest}"].data = params[f"blocks.{first}.{rest}"].detach().clone()

    exact = depth == "copy" or new_cfg.n_layer == old_cfg.n_layer
    set_spec(new, get_spec(model))
    set_param_map(new, pm)
    append_record(
        new,
        {
            "op": "grow",
            "target": "gpt",
            "config": new_cfg.to_dict(),
            "depth": depth,
            "noise": float(noise),
            "seed": int(seed),
            "function_preserving": exact,
            "input_shape": list(example_input.shape),
            "input_dtype": str(example_input.dtype).removeprefix("torch."),
        },
    )
    what = f"grow gpt {_describe(old_cfg)} -> {_describe(new_cfg)} (depth={depth}, noise={noise})"
    if verify and exact:
        verify_preserved(model, new, example_input, what)
    elif not exact:
        log.warning("%s: stacking blocks is not function-preserving; not verified (recorded in the growth log)", what)
    log.info("%s", what)
    return new


def _describe(cfg: GPTConfig) -> str:
    return f"L{cfg.n_layer} d{cfg.n_embd} h{cfg.n_head}x{cfg.head_dim} ff{cfg.d_ff}"
