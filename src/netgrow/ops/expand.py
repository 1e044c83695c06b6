"""Output-layer expansion for new classes (cumulative training, Feng & Panda section III.A).

The output layer is the Linear/Conv whose output is the network output (``netgrow.graph.output``). It gets ``num_classes`` rows: the
old rows and biases are copied exactly (so the old logits are bit-identical) and the new rows are
initialised like the layer's own default init, seeded. Net2WiderNet-style replication is deliberately not
used for the softmax layer: the paper found it interferes with convergence.

    >>> import torch, netgrow
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x = torch.randn(2, 4)
    >>> bigger = netgrow.expand_classes(m, 5, example_input=x, seed=0)
    >>> bigger(x).shape, torch.equal(bigger(x)[:, :3], m(x))
    (torch.Size([2, 5]), True)
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError, VerificationError
from netgrow.graph.example_input import check_example_input
from netgrow.graph.output import find_output_layer, output_layer  # noqa: F401 (find_output_layer: re-exported)
from netgrow.graph.trace import eval_mode
from netgrow.ops import rules
from netgrow.ops.modules import clone, get_module, set_module
from netgrow.ops.param_map import DimMap, ParamSource, identity_map, set_param_map
from netgrow.ops.replay import example_input as record_input
from netgrow.ops.verify import tolerance
from netgrow.spec import append_record

log = logging.getLogger(__name__)

def _fresh_layer(layer: nn.Module, num_classes: int, seed: int | None) -> nn.Module:
    """A layer like ``layer`` with ``num_classes`` outputs, default-initialised on CPU (seeded)."""
    ref = layer.weight
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if isinstance(layer, nn.Linear):
            fresh: nn.Module = nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None, dtype=ref.dtype)
        else:
            assert isinstance(layer, (nn.Conv1d, nn.Conv2d))
            fresh = type(layer)(
                layer.in_channels, num_classes, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                layer.groups, layer.bias is not None, layer.padding_mode, dtype=ref.dtype,
            )  # fmt: skip
    return fresh.to(ref.device)


def expand_classes(
    model: nn.Module, num_classes: int, example_input: torch.Tensor, seed: int | None = None
) -> nn.Module:
    """A copy of ``model`` whose output layer has ``num_classes`` outputs; old logits unchanged.

    Rows ``[0, K)`` (weights and biases) are the old ones, rows ``[K, num_classes)`` are fresh, drawn
    like the layer's default init from ``torch.manual_seed(seed)`` (the global RNG when ``seed`` is None).
    The old logits are checked on ``example_input`` (eval mode).
    """
    check_example_input(model, example_input, "expand_classes")
    path = output_layer(model)
    layer = get_module(model, path)
    if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):  # the layers _fresh_layer can rebuild
        raise NetgrowTypeError(
            f"output layer {path!r} is a {type(layer).__name__}; expand_classes needs a Linear or Conv"
        )
    out_tensors = rules.rule_for(layer).out_tensors  # {tensor: its output-class dim}, from the registry
    current = getattr(layer, next(iter(out_tensors))).shape[next(iter(out_tensors.values()))]
    if not isinstance(num_classes, int) or num_classes <= current:
        raise NetgrowValueError(
            f"expand_classes: output layer {path!r} already has {current} classes, got num_classes={num_classes!r}; "
            f"pass a number larger than {current} (classes are only appended)"
        )
    if getattr(layer, "groups", 1) != 1:
        raise NetgrowValueError(
            f"output layer {path!r} is a grouped conv (groups={layer.groups}); expand_classes needs groups=1"
        )

    new = clone(model)
    old_layer = get_module(new, path)
    fresh = _fresh_layer(old_layer, num_classes, seed)
    fresh.train(old_layer.training)
    with torch.no_grad():
        for name, dim in out_tensors.items():
            if getattr(old_layer, name, None) is not None:
                getattr(fresh, name).narrow(dim, 0, current).copy_(getattr(old_layer, name))
    set_module(new, path, fresh)

    append_record(
        new,
        {
            "op": "expand_classes",
            "num_classes": num_classes,
            "layer": path,
            "seed": seed,
            "input_shape": list(example_input.shape),
            "input_dtype": str(example_input.dtype).removeprefix("torch."),
        },
    )
    pm = identity_map(new)
    index = torch.cat([torch.arange(current), torch.full((num_classes - current,), -1)])
    ones = torch.ones(num_classes, dtype=torch.float64)
    for name, dim in out_tensors.items():
        if getattr(fresh, name, None) is not None:
            pm[f"{path}.{name}"] = ParamSource(f"{path}.{name}", [DimMap(dim, index, ones, ones)])
    set_param_map(new, pm)
    _check_old_logits(model, new, example_input, current)
    log.info("expand_classes: %s %d -> %d classes", path, current, num_classes)
    return new


def _check_old_logits(old: nn.Module, new: nn.Module, x: torch.Tensor, classes: int) -> None:
    with eval_mode(old, new), torch.no_grad():
        a, b = old(x), new(x)
    dim = next((d for d in range(b.dim()) if b.shape[d] != a.shape[d]), None)
    if dim is None or b.narrow(dim, 0, classes).shape != a.shape:
        raise VerificationError(f"expand_classes: output shape {tuple(b.shape)} does not extend {tuple(a.shape)}")
    err = float((b.narrow(dim, 0, classes) - a).abs().max())
    if err > tolerance(a):
        raise VerificationError(f"expand_classes changed the old logits by {err:.3g}", module=None, max_error=err)


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture change of an ``expand_classes`` record."""
    device = next(model.parameters()).device
    return expand_classes(model, record["num_classes"], record_input(record).to(device), seed=record.get("seed"))
