"""Output-layer expansion for new classes (cumulative training, Feng & Panda section III.A).

The output layer is the Linear/Conv whose output is the network output. It gets ``num_classes`` rows: the
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
import torch.fx
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError, TraceError, VerificationError
from netgrow.graph.example_input import check_example_input
from netgrow.ops.modules import clone, get_module, set_module
from netgrow.ops.param_map import DimMap, ParamSource, identity_map, set_param_map
from netgrow.ops.replay import example_input as record_input
from netgrow.ops.verify import eval_mode, tolerance
from netgrow.spec import append_record, get_spec

log = logging.getLogger(__name__)

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
# ops between the output layer and the network output that act on each class's logit separately
_SHAPE_OPS = {
    "flatten", "view", "reshape", "squeeze", "contiguous", "dropout", "float", "to", "sigmoid", "tanh", "relu",
}  # fmt: skip
_SHAPE_MODULES = (
    nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
)  # fmt: skip
_CROSS_CLASS_ACTIVATIONS = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.MultiheadAttention)


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def output_tail(gm: torch.fx.GraphModule) -> tuple[torch.fx.Node | None, list[torch.fx.Node], str | None]:
    """Walk back from the graph output through single-input ops to the output layer.

    Returns ``(layer_node, tail, blocker)``: the call of the output Linear/Conv (or None), the nodes
    visited from the output back to it (inclusive), and a description of the first op on that walk that
    mixes classes or is unknown (None when every op acts on each class separately).
    """
    modules = dict(gm.named_modules())
    out = next(n for n in gm.graph.nodes if n.op == "output")
    node = out.args[0]
    if isinstance(node, (tuple, list)) and node:
        node = node[0]
    tail: list[torch.fx.Node] = []
    blocker: str | None = None
    while isinstance(node, torch.fx.Node):
        tail.append(node)
        if node.op == "call_module":
            mod = modules[str(node.target)]
            if isinstance(mod, _LAYERS):
                return node, tail, blocker
            is_act = type(mod).__module__ == "torch.nn.modules.activation"
            elementwise = is_act and not isinstance(mod, _CROSS_CLASS_ACTIVATIONS)
            if not (isinstance(mod, _SHAPE_MODULES) or elementwise):
                blocker = blocker or f"module {node.target!r} ({type(mod).__name__})"
        elif node.op in ("call_function", "call_method"):
            if _op_name(node) not in _SHAPE_OPS:
                blocker = blocker or f"operation {_op_name(node)!r}"
        else:
            break
        if blocker is None:
            node = node.args[0] if node.args else None  # the data input (later args may be sizes)
            continue
        inputs = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if len(inputs) != 1:
            break
        node = inputs[0]
    return None, tail, blocker


def trace(model: nn.Module, leaves: set[str] | None = None) -> torch.fx.GraphModule:
    """``torch.fx`` trace of ``model`` (``leaves``: extra module names kept as single calls)."""
    extra = leaves or set()

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return qualname in extra or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        raise TraceError(
            f"torch.fx cannot trace {type(model).__name__}: {exc}. Make forward traceable (no control flow "
            "on tensor values), or wrap the untraceable part in a submodule."
        ) from exc
    return torch.fx.GraphModule(model, graph)


def find_output_layer(model: nn.Module) -> str:
    """The ``named_modules()`` name of the Linear/Conv whose output is the network output (via torch.fx)."""
    layer, _, blocker = output_tail(trace(model))
    if layer is None:
        raise NetgrowValueError(
            f"cannot find the output layer of {type(model).__name__}: walking back from the output reaches "
            f"{blocker} before any Linear/Conv; make the last layer a Linear or Conv"
        )
    if blocker is not None:
        raise NetgrowValueError(
            f"the output of {type(model).__name__}'s last layer {layer.target!r} goes through {blocker}, which "
            "mixes or transforms classes, so new rows would change the old outputs; return the raw logits "
            "from forward (apply softmax in the loss)"
        )
    return str(layer.target)


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
    if get_spec(model)["base"] is not None:
        from netgrow.models.registry import output_layer

        path = output_layer(model)
    else:
        path = find_output_layer(model)
    layer = get_module(model, path)
    if not isinstance(layer, _LAYERS):
        raise NetgrowTypeError(
            f"output layer {path!r} is a {type(layer).__name__}; expand_classes needs a Linear or Conv"
        )
    current = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
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
        fresh.weight[:current] = old_layer.weight
        if old_layer.bias is not None:
            fresh.bias[:current] = old_layer.bias
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
    for name in ("weight", "bias"):
        if getattr(fresh, name, None) is not None:
            pm[f"{path}.{name}"] = ParamSource(f"{path}.{name}", [DimMap(0, index, ones, ones)])
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
