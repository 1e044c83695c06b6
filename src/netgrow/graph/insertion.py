"""Where Net2DeeperNet can insert an identity block, read from the traced graph.

``h = φ(W h')`` can become ``φ(U φ(W h'))`` with ``U = I`` only when ``φ(φ(v)) = φ(v)``. Given a module
``after``, ``insertion_context`` moves past the BatchNorm/activation modules that consume it (so "after
conv1" means after conv1's BN and ReLU), classifies the value there by walking back through ops that keep
the value range (pooling, dropout, flatten), and reports the activation to repeat, the BatchNorm and the
layer that produced it. Activation, idempotence and value-range facts come from the layer-rule registry.
Everything that makes an identity impossible raises ``NetgrowValueError`` naming the module and the fix.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import fx, nn

from netgrow.errors import NetgrowValueError
from netgrow.graph import rules
from netgrow.graph.output import output_tail
from netgrow.graph.trace import trace

_BN = nn.modules.batchnorm._BatchNorm  # the model "uses BatchNorm here": the inserted block gets one too
FIX = "deepen after a layer followed by ReLU/ReLU6/Hardtanh modules, or after a layer with no activation"


@dataclass
class InsertionContext:
    """The module at ``path`` computes the insertion point's value; what that value went through."""

    path: str
    act: nn.Module | None  # the activation the value went through (the inserted block repeats it)
    norm: nn.Module | None  # the BatchNorm before it, if the model uses one there
    layer: nn.Module | None  # the Conv/Linear that produced the value (kernel size, bias), if found
    flattened: bool  # a flatten/view lies between that layer and the point
    # set when the value goes through an idempotent functional activation in forward: the wrapper
    # applies it before the block (Sequential(old, pre_act, block)) and forward applies it once more
    pre_act: nn.Module | None = None


def refuse(model: nn.Module, after: str, why: str, fix: str = FIX) -> NetgrowValueError:
    where = f"after {after!r} in {type(model).__name__}"
    return NetgrowValueError(f"deepen: cannot insert an identity layer {where}: {why}; {fix}")


def _op_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def _rule(node: fx.Node, modules: dict[str, nn.Module]) -> rules.LayerRule | None:
    return rules.node_rule(node.op, node.target, modules)


def _is_layer(mod: nn.Module) -> bool:
    """A Conv/Linear-like layer: a producer, or a depthwise conv (a per-channel layer with a kernel)."""
    rule = rules.module_rule(mod)
    return rule is not None and (rule.role == "producer" or rule is rules.DEPTHWISE_CONV)


def _functional_act(node: fx.Node, rule: rules.LayerRule | None) -> nn.Module | None:
    """The module equivalent of an idempotent functional activation node (``None`` if it is none)."""
    if rule is None or not rule.idempotent or rule.as_module is None:
        return None
    return rule.as_module(*node.args, **node.kwargs)


def _first_node(node: fx.Node) -> fx.Node | None:
    arg = node.args[0] if node.args else None
    return arg if isinstance(arg, fx.Node) else None


def _keeps_range(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    rule = _rule(node, modules)
    return node.op in ("call_module", "call_function", "call_method") and rule is not None and rule.keeps_range


def _find_norm(node: fx.Node | None, modules: dict[str, nn.Module], depth: int = 6) -> nn.Module | None:
    """A BatchNorm feeding ``node`` through activations, pass-through ops or adds (a residual sum)."""
    if node is None or depth == 0 or node.op not in ("call_module", "call_function", "call_method"):
        return None
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, _BN):
            return mod
        if _keeps_range(node, modules) or rules.is_activation(mod):
            return _find_norm(_first_node(node), modules, depth - 1)
        return None
    for arg in node.all_input_nodes:
        found = _find_norm(arg, modules, depth - 1)
        if found is not None:
            return found
    return None


def _describe(
    model: nn.Module, after: str, node: fx.Node, modules: dict[str, nn.Module]
) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None, bool]:
    """(activation, batchnorm, layer, flattened) of the value ``node`` computes, walking backwards."""
    flattened = False
    while _keeps_range(node, modules):  # skip ops that keep the value range
        rule = _rule(node, modules)
        flattened |= rule is not None and rule.flow in ("flatten", "reshape")
        prev = _first_node(node)
        if prev is None:
            return None, None, None, flattened
        node = prev
    if node.op == "call_module" and list(modules[str(node.target)].children()):
        # `after` is a container traced as one call: describe its own output
        inner_model = modules[str(node.target)]
        inner = trace(inner_model)
        out = next(n for n in inner.nodes if n.op == "output").args[0]
        if not isinstance(out, fx.Node):
            raise refuse(model, after, "the module does not return a single tensor")
        act, norm, layer, inner_flat = _describe(model, after, out, dict(inner_model.named_modules()))
        return act, norm, layer, flattened or inner_flat
    act: nn.Module | None = None
    rule = _rule(node, modules)
    if node.op == "call_module" and rules.is_activation(mod := modules[str(node.target)]):
        if rule is None or not rule.idempotent:
            why = (
                f"its value comes from {type(mod).__name__} ({node.target!r}), which is not idempotent "
                "(phi(phi(v)) != phi(v)), so no identity layer of that kind exists there"
            )
            raise refuse(model, after, why)
        act = copy.deepcopy(mod)
    elif node.op in ("call_function", "call_method") and rule is not None and rule.activation:
        if not rule.idempotent:
            raise refuse(model, after, f"its value comes from the functional {_op_name(node)}, which is not idempotent")
        act = _functional_act(node, rule)
    if act is not None:
        node = _first_node(node) or node
    norm = _find_norm(node, modules)
    layer = None
    producer: fx.Node | None = node
    while producer is not None and producer.op == "call_module":
        mod = modules[str(producer.target)]
        if _is_layer(mod):
            layer = mod
            break
        if not isinstance(mod, _BN):
            break
        producer = _first_node(producer)
    return act, norm, layer, flattened


def insertion_context(model: nn.Module, after: str) -> InsertionContext:
    """Resolve module ``after`` (a leaf or a container traced as one call) to the insertion point."""
    mod = model.get_submodule(after)
    graph = trace(model, leaves={after} if list(mod.children()) else ())
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "call_module":
            calls[str(n.target)] = calls.get(str(n.target), 0) + 1
    shared_fix = "give each call site its own module, or deepen after another module"
    pre_act: nn.Module | None = None
    if calls.get(after, 0) != 1:
        why = "it is never called in forward" if after not in calls else f"it is called {calls[after]} times in forward"
        raise refuse(model, after, why, shared_fix)
    node = next(n for n in graph.nodes if n.op == "call_module" and n.target == after)

    tail = output_tail(graph, modules)
    if node in tail.nodes:
        raise refuse(
            model, after,
            f"it is the output layer or after it (the output layer is {getattr(tail.layer, 'target', None)!r}): "
            "an identity there only adds a linear map on the logits",
            "deepen after a hidden layer, or use expand_classes to grow the output layer",
        )  # fmt: skip

    while True:  # move past the BatchNorm / activation modules that consume `after`
        cur = modules[str(node.target)]
        if rules.is_activation(cur) or len(node.users) != 1:
            break
        (user,) = node.users
        after_layer = _is_layer(cur) or isinstance(cur, _BN)
        if user.op == "call_module":
            nxt = modules[str(user.target)]
            norm_next = isinstance(nxt, _BN) and _is_layer(cur)
            act_next = rules.is_activation(nxt) and after_layer
            if not (norm_next or act_next):
                break
            if calls[str(user.target)] != 1:
                why = f"it feeds {user.target!r}, which is called {calls[str(user.target)]} times in forward"
                raise refuse(model, after, why, shared_fix)
            node = user
            continue
        rule = _rule(user, modules)
        if not (after_layer and user.op in ("call_function", "call_method") and rule is not None and rule.activation):
            break
        if not rule.idempotent:
            raise refuse(
                model, after,
                f"its output goes through the functional {_op_name(user)} in forward, which is not idempotent "
                "(phi(phi(v)) != phi(v)), so no identity layer of that kind exists there",
            )  # fmt: skip
        # A functional activation in forward cannot be wrapped, but since it is idempotent the module
        # can apply it itself: path -> Sequential(old, act, block), and forward's act(act(v)) == act(v).
        pre_act = _functional_act(user, rule)
        break
    path = str(node.target)
    act, norm, layer, flattened = _describe(model, after, node, modules)
    if pre_act is not None:
        act = pre_act
    return InsertionContext(path, act, norm, layer, flattened, pre_act)
