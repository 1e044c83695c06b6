"""The output layer of a model: the producer (Linear/Conv) whose output is the network output.

Found by walking back from the traced graph's output through ops that act on each output unit on its
own (per the layer-rule registry: element-wise activations, casts, flatten/view, pooling), or named by
a resolver that a higher layer registers (``netgrow.models`` registers its families' ``"classifier"``),
so the growth ops never need to know the model families.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Flatten())
    >>> output_layer(net)
    '2'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import fx, nn

from netgrow.errors import NetgrowValueError
from netgrow.graph import rules
from netgrow.graph.trace import trace

# flows that keep every unit of the channel dim apart, so each class's logit is transformed on its own
_PER_UNIT_FLOWS = frozenset({"same", "cast", "spatial", "flatten", "reshape", "squeeze", "unsqueeze"})
OutputResolver = Callable[[nn.Module], "str | None"]
_RESOLVERS: list[OutputResolver] = []


def register_output_resolver(resolver: OutputResolver) -> None:
    """Register a function naming a model's output layer (or returning ``None`` when it does not know)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)


@dataclass
class OutputTail:
    """The walk back from the graph output: the output layer's node, the nodes visited (output first,
    the layer last) and the first op on the way that mixes or transforms classes (``None`` if none)."""

    layer: fx.Node | None
    nodes: list[fx.Node] = field(default_factory=list)
    blocker: str | None = None


def describe_node(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(modules[str(node.target)]).__name__})"
    target = node.target
    return f"operation {target if isinstance(target, str) else getattr(target, '__name__', str(target))!r}"


def output_tail(graph: fx.Graph, modules: dict[str, nn.Module]) -> OutputTail:
    """Walk back from ``graph``'s output through single-input ops to the output layer (see ``OutputTail``)."""
    out = next(n for n in graph.nodes if n.op == "output")
    node = out.args[0]
    if isinstance(node, (tuple, list)) and node:
        node = node[0]
    tail = OutputTail(None)
    while isinstance(node, fx.Node):
        tail.nodes.append(node)
        if node.op not in ("call_module", "call_function", "call_method"):
            break
        rule = rules.node_rule(node.op, node.target, modules)
        if node.op == "call_module" and rule is not None and rule.role == "producer":
            tail.layer = node
            return tail
        per_unit = rule is not None and rule.role == "passthrough" and rule.flow in _PER_UNIT_FLOWS
        if not per_unit:
            tail.blocker = tail.blocker or describe_node(node, modules)
        if tail.blocker is None:
            node = node.args[0] if node.args else None  # the data input (later args may be sizes)
            continue
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        if len(inputs) != 1:
            break
        node = inputs[0]
    return tail


def find_output_layer(model: nn.Module) -> str:
    """The ``named_modules()`` name of the producer whose output is the network output (via torch.fx)."""
    tail = output_tail(trace(model), dict(model.named_modules()))
    if tail.layer is None:
        raise NetgrowValueError(
            f"cannot find the output layer of {type(model).__name__}: walking back from the output reaches "
            f"{tail.blocker} before any Linear/Conv; make the last layer a Linear or Conv"
        )
    if tail.blocker is not None:
        raise NetgrowValueError(
            f"the output of {type(model).__name__}'s last layer {tail.layer.target!r} goes through {tail.blocker}, "
            "which mixes or transforms classes, so new rows would change the old outputs; return the raw logits "
            "from forward (apply softmax in the loss)"
        )
    return str(tail.layer.target)


def output_layer(model: nn.Module) -> str:
    """The output layer's name: from a registered resolver (model families), else found by tracing."""
    for resolver in _RESOLVERS:
        name = resolver(model)
        if name is not None:
            return name
    return find_output_layer(model)
