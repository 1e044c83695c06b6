"""Trace a model with ``torch.fx`` and record the shape of every intermediate value.

Standard ``torch.nn`` layers stay leaf modules (one ``call_module`` node each, named as in
``named_modules()``); user modules are traced through, so their ``forward`` code becomes graph nodes.
Shapes are propagated by interpreting the graph once on the example input in eval mode under
``no_grad``. That run happens on a shallow copy of the module tree whose tensors live on the ``meta``
device (shapes only: no arithmetic, no memory for weights, the model is not touched); a model whose
graph cannot run on ``meta`` is run for real (eval mode, training flags restored afterwards).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import fx, nn

from netgrow.errors import TraceError
from netgrow.graph import rules

log = logging.getLogger(__name__)

SHAPE = "netgrow_shape"  # node.meta key: tuple of ints for a tensor value, None otherwise

_ADVICE = (
    "torch.fx cannot trace {name} while its forward() has Python control flow on tensor values "
    "(e.g. `if x.sum() > 0`), tensor-to-Python conversions (int(x), x.item(), len(x)) or calls fx cannot "
    "proxy. Rewrite that part, or move it into a submodule and register a netgrow.LayerRule for its class "
    "(a class with a rule is traced as one call)."
)
_FORWARD_HOOKS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)  # fmt: skip


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping modules with a netgrow rule and the ``leaves`` paths as single calls."""

    def __init__(self, leaves: frozenset[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or rules.is_leaf_class(type(m)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, leaves: Iterable[str] = ()) -> fx.Graph:
    """Symbolically trace ``model``; raise ``TraceError`` with fx's message and advice on failure.

    ``leaves``: extra ``named_modules()`` paths kept as single ``call_module`` nodes.
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"expected a torch.nn.Module, got {type(model).__name__}; pass the model itself")
    try:
        return _Tracer(frozenset(leaves)).trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError, ... depending on the cause
        name = type(model).__name__
        advice = _ADVICE.format(name=name)
        raise TraceError(f"torch.fx could not trace {name}: {type(exc).__name__}: {exc}. {advice}") from exc


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put models in eval mode and restore every submodule's own ``training`` flag afterwards."""
    saved = [[(m, m.training) for m in model.modules()] for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for flags in saved:
            for m, flag in flags:
                m.training = flag


class _ShapeRecorder(fx.Interpreter):
    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        n.meta[SHAPE] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
        return result

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if isinstance(x, torch.Tensor) and x.is_meta:
            # Layers whose output has their input's shape are skipped on the meta device: some of them
            # (BatchNorm, Linear) have Python meta kernels whose first use imports much of torch (seconds).
            m = self.fetch_attr(target)
            rule = rules.module_rule(m)
            if rule is not None and rule.keeps_shape:
                return x
            if type(m) is nn.Linear and x.dim() >= 1 and x.shape[-1] == m.in_features:  # same reason
                return x.new_empty((*x.shape[:-1], m.out_features))
        return super().call_module(target, args, kwargs)


def propagate_shapes(root: nn.Module, graph: fx.Graph, example_input: Any) -> None:
    """Interpret ``graph`` over ``root`` on ``example_input`` (eval, no grad); store shapes in ``node.meta``."""
    try:
        with eval_mode(root), torch.no_grad():
            _ShapeRecorder(root, graph=graph).run(example_input)
    except Exception as exc:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise TraceError(
            f"running the traced {type(root).__name__} on the example input of shape {shape} failed: "
            f"{type(exc).__name__}: {exc}. Pass an example input the model accepts (batch first, the model's dtype "
            f"and device)."
        ) from exc


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The recorded shape of a node's value (``None`` for non-tensors and non-nodes)."""
    if isinstance(node, fx.Node):
        return node.meta.get(SHAPE)
    return None


def meta_copy(model: nn.Module) -> nn.Module:
    """A shallow copy of the module tree with every parameter and buffer on the ``meta`` device.

    Modules are ``copy.copy``-ed (user attributes are shared, never written), their tensor dicts
    and child dicts replaced, and their forward hooks dropped; no tensor data is copied.
    """
    tensors: dict[int, torch.Tensor | None] = {}

    def meta(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        if id(t) not in tensors:  # keep tied weights tied
            m = torch.empty_like(t, device="meta")
            tensors[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
        return tensors[id(t)]

    copies: dict[int, nn.Module] = {}
    for m in model.modules():
        c = copy.copy(m)
        c._parameters = {k: meta(v) for k, v in m._parameters.items()}  # type: ignore[assignment]
        c._buffers = {k: meta(v) for k, v in m._buffers.items()}
        for hooks in _FORWARD_HOOKS:
            if hasattr(c, hooks):
                setattr(c, hooks, OrderedDict())
        copies[id(m)] = c
    for c in copies.values():
        c._modules = {k: None if v is None else copies[id(v)] for k, v in c._modules.items()}
    return copies[id(model)]


def trace_with_shapes(model: nn.Module, example_input: Any) -> tuple[fx.Graph, nn.Module]:
    """Trace ``model`` and record every node's shape for ``example_input`` (see the module docstring).

    Returns the graph and the module tree its targets resolve in: same names, types and attributes
    as ``model``'s, but possibly meta-device copies, so read structure from it, never weights.
    """
    graph = trace(model)
    if isinstance(example_input, torch.Tensor):
        try:
            root = meta_copy(model)
            propagate_shapes(root, graph, example_input.to("meta"))
            return graph, root
        except Exception as exc:  # data-dependent code, a kernel without meta support, ...: run it for real
            log.debug("shape propagation on the meta device failed (%s); running the model", exc)
    propagate_shapes(model, graph, example_input)
    return graph, model
