"""One place that decides how a model's graph is captured: ``torch.fx``, else ``torch.export``.

``torch.fx`` symbolic tracing keeps standard layers as ``call_module`` nodes and is cheap, but it cannot
trace most Hugging Face models (transformers 5 dropped its fx tracer; Python control flow on sizes and
cache objects defeat ``symbolic_trace``). ``torch.export`` captures them as an ATen-level graph whose
parameters are graph inputs. ``capture`` tries fx first and falls back to export; a model neither can
capture raises one ``TraceError`` naming both failures.

The exported graph is translated into the vocabulary the channel-group analysis reads
(``netgrow.graph.groups``), so there is one analysis for both captures:

- a parameter or buffer input becomes a ``get_attr`` node named by its ``named_parameters()`` path;
- an ATen call whose weight belongs to a layer with a rule (``aten.linear`` of an ``nn.Linear``,
  ``aten.convNd`` of an ``nn.ConvNd``, ``aten.embedding`` of an ``nn.Embedding``, ``aten.layer_norm`` of
  an ``nn.LayerNorm``, ``aten.addmm`` of Hugging Face's transposed ``Conv1D``) becomes a ``call_module``
  node of that layer; the node's ``nn_module_stack`` resolves tied weights (the embedding lookup of a
  weight tied to the output head is the embedding's call);
- any other ATen op becomes the ``torch`` function of the same name (``aten.view`` -> ``torch.reshape``,
  ``aten.slice`` -> indexing, ``aten._softmax`` -> ``torch.softmax``, ...), or stays the ATen op, which the
  analysis treats as unknown (locking the channels it touches, naming the node);
- shapes come from the export's fake tensors; the sizes in an exported graph are specialised to the
  example input, so the analysis does not read ``view`` sizes as hard-coded channel counts there (the
  function check after an op catches a model that really hard-codes one).

Hugging Face models are exported with ``use_cache=False`` when their ``forward`` accepts it.
"""

from __future__ import annotations

import inspect
import logging
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from netgrow.errors import TraceError
from netgrow.graph.trace import SHAPE, eval_mode, trace_with_shapes

log = logging.getLogger(__name__)

EXPORTED = "netgrow_exported"  # graph attribute: True for a translated torch.export graph

# ATen op name -> torch-level callable with the same positional arguments
_SAME_ARGS: dict[str, Any] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum, "where": torch.where,
    "view": torch.reshape, "reshape": torch.reshape, "_unsafe_view": torch.reshape,
    "transpose": torch.transpose, "permute": torch.permute, "t": torch.t,
    "unsqueeze": torch.unsqueeze, "squeeze": torch.squeeze, "flatten": torch.flatten,
    "cat": torch.cat, "split": torch.split, "split_with_sizes": torch.split, "chunk": torch.chunk,
    "matmul": torch.matmul, "bmm": torch.matmul, "mm": torch.matmul,
    "scaled_dot_product_attention": F.scaled_dot_product_attention,
    "softmax": torch.softmax, "_softmax": torch.softmax, "log_softmax": torch.log_softmax,
    "_log_softmax": torch.log_softmax,
    "mean": torch.mean, "sum": torch.sum, "amax": torch.amax, "amin": torch.amin, "var": torch.var,
    "relu": torch.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "exp": torch.exp, "neg": torch.neg, "abs": torch.abs, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt,
    "square": torch.square, "clamp": torch.clamp, "expand": "expand", "masked_fill": torch.masked_fill,
}  # fmt: skip
# ATen ops that return their input's values unchanged in layout (dtype/device/copies/dropout)
_IDENTITY = {"dropout", "clone", "contiguous", "alias", "detach", "to", "_to_copy", "type_as", "lift_fresh_copy"}
_IGNORED = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size"}


def capture(model: nn.Module, example_input: Any) -> tuple[fx.Graph, nn.Module]:
    """The model's graph with every node's shape (``trace.SHAPE``) and the module tree it refers to.

    torch.fx first; if fx cannot trace or run it, torch.export. Raises ``TraceError`` naming both failures.
    """
    try:
        return trace_with_shapes(model, example_input)
    except TraceError as fx_error:
        if not isinstance(example_input, torch.Tensor):
            raise
        try:
            graph = export_graph(model, example_input)
        except Exception as export_error:  # export raises many types (Unsupported, UserError, RuntimeError, ...)
            raise TraceError(
                f"netgrow could not capture {type(model).__name__}: (1) {fx_error} (2) torch.export failed too: "
                f"{type(export_error).__name__}: {str(export_error)[:600]}. Make forward traceable by one of them "
                f"(torch.export needs no Python control flow on tensor values either)."
            ) from export_error
        log.debug("%s captured with torch.export (torch.fx failed: %s)", type(model).__name__, fx_error)
        return graph, model


def export_kwargs(model: nn.Module) -> dict[str, Any]:
    """Keyword arguments every capture and check passes: ``use_cache=False`` where forward takes it."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"use_cache": False} if "use_cache" in params else {}


def export_graph(model: nn.Module, example_input: torch.Tensor) -> fx.Graph:
    """``torch.export`` the model on ``example_input`` (eval mode) and translate the graph (module docstring)."""
    with eval_mode(model), torch.no_grad():
        ep = torch.export.export(model, (example_input,), kwargs=export_kwargs(model), strict=False)
    return _Translator(model, ep).run()


class _Translator:
    def __init__(self, model: nn.Module, ep: Any):
        self.model = model
        self.ep = ep
        sig = ep.graph_signature
        self.fqn: dict[str, str] = {
            **sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants,
        }  # fmt: skip
        self.user_outputs = [s.arg.name for s in sig.output_specs if s.kind.name == "USER_OUTPUT"]
        self.mods = dict(model.named_modules())
        # every name of every parameter (tied weights have several)
        self.aliases: dict[int, list[str]] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            self.aliases.setdefault(id(p), []).append(name)
        self.params = dict(model.named_parameters(remove_duplicate=False))
        self.graph = fx.Graph()
        self.env: dict[fx.Node, Any] = {}

    # ------------------------------------------------------------------ helpers
    def owner(self, node: fx.Node, arg: Any, types: tuple[type, ...] | None = None, attr: str = "weight") -> str | None:
        """The module whose ``attr`` is the parameter ``arg``, preferring one in ``node``'s module stack."""
        if not isinstance(arg, fx.Node) or arg.op != "placeholder" or arg.name not in self.fqn:
            return None
        param = self.params.get(self.fqn[arg.name])
        if param is None:
            return None
        names = [n.rpartition(".")[0] for n in self.aliases.get(id(param), []) if n.rpartition(".")[2] == attr]
        stack = [v[0] for v in (node.meta.get("nn_module_stack") or {}).values()]
        for path in reversed(stack):
            if path in names:
                return path
        return names[0] if names else None

    def shape(self, node: fx.Node) -> tuple[int, ...] | None:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            try:
                return tuple(int(s) for s in val.shape)
            except TypeError:  # symbolic size
                return None
        return None

    def emit(self, src: fx.Node, op: str, target: Any, args: tuple, kwargs: dict | None = None) -> fx.Node:
        new = self.graph.create_node(op, target, args, kwargs or {}, name=src.name)
        new.meta[SHAPE] = self.shape(src)
        new.meta["nn_module_stack"] = src.meta.get("nn_module_stack")
        return new

    def arg(self, a: Any) -> Any:
        return fx.node.map_arg(a, lambda n: self.env[n])

    def module_call(self, node: fx.Node) -> fx.Node | None:
        """An ATen call that is one layer's forward, as a ``call_module`` node (``None`` otherwise)."""
        name = node.target.overloadpacket.__name__ if hasattr(node.target, "overloadpacket") else ""
        a = node.args
        if name == "linear":
            path = self.owner(node, a[1])
            m = self.mods.get(path or "")
            bias = a[2] if len(a) > 2 else None
            if isinstance(m, nn.Linear) and (bias is None) == (m.bias is None):
                return self.emit(node, "call_module", path, (self.arg(a[0]),))
        elif name == "embedding":
            path = self.owner(node, a[0])
            if isinstance(self.mods.get(path or ""), nn.Embedding):
                return self.emit(node, "call_module", path, (self.arg(a[1]),))
        elif name == "layer_norm":
            path = self.owner(node, a[2] if len(a) > 2 else None)
            if isinstance(self.mods.get(path or ""), nn.LayerNorm):
                return self.emit(node, "call_module", path, (self.arg(a[0]),))
        elif name in ("conv1d", "conv2d", "conv3d"):  # aten.convNd(x, weight, bias, stride, padding, ...)
            path = self.owner(node, a[1])
            m = self.mods.get(path or "")
            bias = a[2] if len(a) > 2 else None
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and (bias is None) == (m.bias is None):
                return self.emit(node, "call_module", path, (self.arg(a[0]),))
        elif name == "addmm":  # Hugging Face Conv1D: addmm(bias, x, weight[in, out])
            path = self.owner(node, a[2])
            m = self.mods.get(path or "")
            if m is not None and type(m).__name__ == "Conv1D" and getattr(m, "bias", None) is not None:
                if self.owner(node, a[0], attr="bias") == path:
                    return self.emit(node, "call_module", path, (self.arg(a[1]),))
        return None

    # ------------------------------------------------------------------ translation
    def run(self) -> fx.Graph:
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                if node.name in self.fqn:
                    new = self.graph.get_attr(self.fqn[node.name])
                    new.meta[SHAPE] = self.shape(node)
                else:
                    new = self.graph.placeholder(node.name)
                    new.meta[SHAPE] = self.shape(node)
                self.env[node] = new
            elif node.op == "call_function":
                self.env[node] = self.call_function(node)
            elif node.op == "output":
                outs = [o for o in node.args[0] if isinstance(o, fx.Node) and o.name in self.user_outputs]
                self.graph.output(tuple(self.env[o] for o in outs))
            else:  # get_attr of a submodule (higher-order ops): opaque
                self.env[node] = self.emit(node, node.op, node.target, self.arg(node.args), self.arg(node.kwargs))
        setattr(self.graph, EXPORTED, True)
        return self.graph

    def call_function(self, node: fx.Node) -> fx.Node | None:
        target = node.target
        if target is operator.getitem:
            return self.emit(node, "call_function", operator.getitem, self.arg(node.args))
        name = target.overloadpacket.__name__ if hasattr(target, "overloadpacket") else getattr(target, "__name__", "")
        if name in _IGNORED:
            return None
        call = self.module_call(node)
        if call is not None:
            return call
        args, kwargs = self.arg(node.args), self.arg(node.kwargs)
        if name in _IDENTITY:
            return self.emit(node, "call_method", "clone", (args[0],))
        if name == "slice":  # slice(x, dim, start, end, step) -> x[:, ..., start:end:step]
            dim = args[1] if len(args) > 1 else 0
            start = args[2] if len(args) > 2 else None
            end = args[3] if len(args) > 3 else None
            step = args[4] if len(args) > 4 else None
            ndim = len(self.shape(node) or ())
            dim = dim + ndim if dim < 0 else dim
            index = (slice(None),) * dim + (slice(start, end, step),)
            return self.emit(node, "call_function", operator.getitem, (args[0], index))
        if name == "select":  # select(x, dim, i) -> x[:, ..., i]
            dim = args[1]
            ndim = len(self.shape(node) or ()) + 1
            dim = dim + ndim if dim < 0 else dim
            return self.emit(node, "call_function", operator.getitem, (args[0], (slice(None),) * dim + (args[2],)))
        fn = _SAME_ARGS.get(name)
        if fn == "expand":
            return self.emit(node, "call_method", "expand", (args[0], *args[1]))
        if fn is not None:
            if name in ("_softmax", "_log_softmax"):
                args = args[:2]
            return self.emit(node, "call_function", fn, args, kwargs)
        return self.emit(node, "call_function", target, args, kwargs)  # unknown: the analysis locks its inputs
