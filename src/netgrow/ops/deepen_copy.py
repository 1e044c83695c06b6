"""Deepen by copying a residual block (``deepen(..., kind="copy")``): the G_stack / MIDAS move, made exact.

``copy_block(model, after, example_input)`` inserts a copy of the residual block ``after`` (a transformer
layer, a ResNet BasicBlock: any module whose output is its input plus residual branches) right after it.
With ``zero_output=True`` the copy's residual-branch outputs are zeroed, so the copy computes
``x + 0 = x`` and the function is unchanged:

- the branch outputs are found from the channel groups: the producers inside the block whose group also
  has producers outside it are the ones writing into the residual stream (``attn.c_proj`` and
  ``mlp.c_proj`` of a GPT-2 layer, ``o_proj``/``down_proj`` of a Llama layer, ``conv2`` of a BasicBlock);
- where a BatchNorm inside the block carries the stream (a BasicBlock's ``bn2``), its weight and bias are
  zeroed instead (Goyal et al.'s zero-init residual: the conv keeps its weights, so gradients flow);
  otherwise the producers' weights and biases are zeroed (their gradient is input x upstream gradient,
  non-zero, so the branch starts learning after one step).

This is exact for pre-norm transformers and post-activation ResNet blocks (whose input is already >= 0).
A post-norm block (BERT: ``LN(x + branch)``) is not the identity with zero branches; the check after the
op refuses it. ``zero_output=False`` is plain stacking (not function-preserving, not verified; the log
says so).

Where the block sits in an ``nn.ModuleList``/``nn.Sequential`` the copy is inserted into that list (so the
model's own ``forward`` loop runs it; an int ``config`` attribute counting the layers, as Hugging Face's
``num_hidden_layers``, and the layers' ``layer_idx`` follow); anywhere else the block is replaced by
``nn.Sequential(block, copy)`` at its path.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.graph import rules as layer_rules
from netgrow.graph.groups import analyse
from netgrow.ops.modules import clone, get_module, set_module
from netgrow.ops.param_map import ParamMap, ParamSource, set_param_map
from netgrow.ops.verify import eval_mode, verify_preserved
from netgrow.spec import append_record

log = logging.getLogger(__name__)

_LAYER_COUNTS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def _refuse(model: nn.Module, after: str, why: str) -> NetgrowValueError:
    return NetgrowValueError(
        f"deepen: cannot insert a copy of {after!r} in {type(model).__name__}: {why}; name a residual block "
        f"whose output has its input's shape (a transformer layer, a ResNet BasicBlock without projection)"
    )


def _block_shapes(model: nn.Module, block: nn.Module, example_input: Any) -> list[tuple[Any, Any]]:
    """(input, output) shapes of every call of ``block`` while ``model`` runs on the example (eval mode)."""
    calls: list[tuple[Any, Any]] = []

    def hook(_m: nn.Module, args: tuple, out: Any) -> None:
        x = args[0] if args else None
        y = out[0] if isinstance(out, (tuple, list)) else out
        calls.append((getattr(x, "shape", None), getattr(y, "shape", None)))

    handle = block.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        handle.remove()
    return calls


def branch_outputs(model: nn.Module, after: str, example_input: torch.Tensor) -> list[str]:
    """The modules inside block ``after`` to zero so its residual branches output 0 (module docstring)."""
    graph = analyse(model, example_input)
    prefix = after + "."
    stream = [
        g for g in graph.groups
        if any(p.startswith(prefix) for p in g.producers) and any(not p.startswith(prefix) for p in g.producers)
    ]  # fmt: skip
    inside = [p for g in stream for p in g.producers if p.startswith(prefix)]
    norms = [
        n for g in stream for n in g.passthrough
        if n.startswith(prefix) and n in graph.modules and graph.modules[n].kind == "channelwise"
        and layer_rules.module_rule(model.get_submodule(n)) is layer_rules.BATCHNORM
    ]  # fmt: skip
    return list(dict.fromkeys(norms or inside))


def _zero(module: nn.Module) -> list[str]:
    zeroed = []
    with torch.no_grad():
        for name in ("weight", "bias"):
            t = getattr(module, name, None)
            if isinstance(t, torch.Tensor):
                t.zero_()
                zeroed.append(name)
    return zeroed


def _insert(new: nn.Module, after: str, block: nn.Module, twin: nn.Module) -> tuple[str, dict[str, str]]:
    """Put ``twin`` right after ``block``; returns the twin's path and {new name: old name} of moved modules."""
    parent_path, _, attr = after.rpartition(".")
    parent = new.get_submodule(parent_path) if parent_path else new
    pre = parent_path + "." if parent_path else ""
    if isinstance(parent, (nn.ModuleList, nn.Sequential)) and attr.isdigit():
        i = int(attr)
        items = list(parent)
        items.insert(i + 1, twin)
        keys = list(parent._modules)
        for k in keys:
            del parent._modules[k]
        for j, m in enumerate(items):
            parent._modules[str(j)] = m
        moved = {f"{pre}{j + 1}": f"{pre}{j}" for j in range(i + 1, len(items) - 1)}
        for j, m in enumerate(items):  # Hugging Face layers know their index (KV cache slots)
            for sub in m.modules():
                if isinstance(getattr(sub, "layer_idx", None), int):
                    sub.layer_idx = j
        config = getattr(new, "config", None)
        for name in _LAYER_COUNTS:
            if config is not None and getattr(config, name, None) == len(items) - 1:
                setattr(config, name, len(items))
        return f"{pre}{i + 1}", moved
    set_module(new, after, nn.Sequential(block, twin))
    return f"{after}.1", {f"{after}.0": after}


def copy_block(
    model: nn.Module, after: str, example_input: torch.Tensor, zero_output: bool = True, verify: bool = True
) -> nn.Module:
    """A copy of ``model`` with a copy of residual block ``after`` inserted right after it (module docstring)."""
    block = get_module(model, after)
    calls = _block_shapes(model, block, example_input)
    if len(calls) != 1:
        raise _refuse(model, after, f"it runs {len(calls)} times in forward (a copy must run exactly once)")
    (shape_in, shape_out), = calls
    if shape_in is None or shape_in != shape_out:
        raise _refuse(model, after, f"its output shape {shape_out} differs from its input shape {shape_in}")
    zeroed_modules = branch_outputs(model, after, example_input) if zero_output else []
    if zero_output and not zeroed_modules:
        raise _refuse(model, after, "no residual branch writes into its input's channels (not a residual block)")

    new = clone(model)
    original = get_module(new, after)
    twin = copy.deepcopy(original)
    zeroed: set[str] = set()
    for name in zeroed_modules:
        rel = name[len(after) + 1 :]
        zeroed |= {f"{rel}.{t}" for t in _zero(twin.get_submodule(rel))}
    twin_path, moved = _insert(new, after, original, twin)

    pm: ParamMap = {}
    for full, _ in [*new.named_parameters(), *new.named_buffers()]:
        if full.startswith(twin_path + "."):
            rel = full[len(twin_path) + 1 :]
            pm[full] = ParamSource(None if rel in zeroed else f"{after}.{rel}")
            continue
        source = full
        for new_prefix, old_prefix in moved.items():
            if full.startswith(new_prefix + "."):
                source = old_prefix + full[len(new_prefix) :]
                break
        pm[full] = ParamSource(source)
    set_param_map(new, pm)
    append_record(
        new,
        {
            "op": "deepen",
            "after": after,
            "kind": "copy",
            "zero_output": bool(zero_output),
            "point": twin_path,
            "input_shape": list(example_input.shape),
            "input_dtype": str(example_input.dtype).removeprefix("torch."),
        },
    )
    if zero_output and verify:
        verify_preserved(model, new, example_input, f"deepen by copying {after!r}")
    if zero_output:
        log.info("deepen: copied %s to %s with zeroed branch outputs %s", after, twin_path, zeroed_modules)
    else:
        log.info("deepen: copied %s to %s (plain stacking: not function-preserving, verification skipped)",
                 after, twin_path)  # fmt: skip
    return new
