"""Channel groups: the tensor dimensions of a model that must be resized together.

A *channel group* starts at the output dimension of a Conv/Linear (its *producer*) and follows those
channels through everything that keeps them apart (*pass-through*: norms, activations, dropout, pooling,
depthwise convs, flatten, residual ``add``, SE ``mul``, ``cat``) up to the layers that sum over them
(*consumers*: the next Conv/Linear input dimension). Tensors combined elementwise share one group
(union-find); ``cat`` makes a dimension out of several groups laid side by side (offsets); ``flatten``
turns each channel into a block of H·W features.

Every tensor value in the traced graph carries a *layout*: the one dimension that holds resizable
channels, as a sequence of segments ``(group, block)``. A tensor without a layout has fixed channels.
Whenever channels reach an operation this module does not understand (a reshape that splits them, a
hard-coded ``view(-1, 512)``, indexing, an unknown function), their group is *locked* with a reason
naming the node, and the rest of the model is analysed as usual.

What each call does to the channels is its rule's role (and, for a pass-through op, its flow) in the
layer-rule registry ``netgrow.graph.rules``; a call without a rule locks the channels reaching it. This
module only describes the model; it never changes it (``netgrow.ops.rules`` resizes tensors).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import fx, nn

from netgrow.graph import rules
from netgrow.graph.example_input import check_example_input
from netgrow.graph.trace import shape_of, trace_with_shapes

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ public types
@dataclass(frozen=True)
class Consumer:
    """A Conv/Linear whose input dimension sums over a group.

    ``offset``: index of the group's first feature in the consumer's input dim (non-zero after ``cat``).
    ``block``: features per channel (H·W after a flatten from conv to linear, else 1).
    """

    module: str
    offset: int = 0
    block: int = 1


@dataclass
class ChannelGroup:
    """One set of coupled channel dimensions (see the module docstring).

    ``producers``: ``named_modules()`` names of the Conv/Linear layers whose output dim is this group.
    ``passthrough``: modules the channels flow through unchanged in number (norms, activations, ...).
    ``consumers``: layers whose input dim sums over the group.
    ``locked``/``reason``: the group cannot be resized, and why. ``is_output``: the channels reach the
    network output (never resized). ``uniform``: why the group may only grow by whole multiples with a
    uniform mapping (a LayerNorm/GroupNorm normalises over it), else ``None``.
    """

    id: int
    width: int
    producers: list[str] = field(default_factory=list)
    passthrough: list[str] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    locked: bool = False
    reason: str | None = None
    is_output: bool = False
    uniform: str | None = None

    @property
    def resizable(self) -> bool:
        """True for a hidden group that widen/prune may change (not locked, not the output)."""
        return not self.locked and not self.is_output and bool(self.producers)

    @property
    def name(self) -> str:
        """The canonical name of the group: its first producer (or ``"group<id>"`` without one)."""
        return self.producers[0] if self.producers else f"group{self.id}"


@dataclass(frozen=True)
class Segment:
    """A run of ``width(group) * block`` positions of a dimension; channel c owns ``block`` of them."""

    group: int
    block: int = 1


Layout = tuple[Segment, ...]


@dataclass
class ModuleUse:
    """How one module's tensors touch channel groups.

    ``kind="producer"``: a Conv/Linear; ``consumes`` is the layout of its input dim (``None`` if fixed),
    ``produces`` the group of its output dim. ``kind="channelwise"``: a module with per-channel tensors
    (BatchNorm, LayerNorm, GroupNorm, PReLU, depthwise conv); ``carries`` is the layout of those tensors'
    dimension ``param_dim``.
    """

    name: str
    kind: Literal["producer", "channelwise"]
    consumes: Layout | None = None
    produces: int | None = None
    carries: Layout | None = None
    param_dim: int = 0


@dataclass
class ChannelGraph:
    """The result of the analysis: groups plus, per module, which groups its tensors are indexed by."""

    groups: list[ChannelGroup]
    modules: dict[str, ModuleUse]

    def group(self, gid: int) -> ChannelGroup:
        return self.groups[gid]

    def producer_group(self, module: str) -> ChannelGroup | None:
        """The group whose producer is ``module`` (``None`` if ``module`` produces no group)."""
        use = self.modules.get(module)
        if use is None or use.produces is None:
            return None
        return self.groups[use.produces]

    def groups_touching(self, module: str) -> list[ChannelGroup]:
        """Every group that lists ``module`` as producer, pass-through or consumer."""
        out = []
        for g in self.groups:
            if module in g.producers or module in g.passthrough or any(c.module == module for c in g.consumers):
                out.append(g)
        return out

    def layout_width(self, layout: Layout) -> int:
        return sum(self.groups[s.group].width * s.block for s in layout)


# ------------------------------------------------------------------------------------------ analysis
@dataclass
class _Info:
    width: int
    producers: list[str] = field(default_factory=list)
    passthrough: list[str] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    locks: list[str] = field(default_factory=list)
    uniform: list[str] = field(default_factory=list)
    is_output: bool = False


Tracked = tuple[int, Layout]  # (dim, layout) of a tensor value with resizable channels


@dataclass
class _Call:
    """One call node with what the analysis needs: its module (if any), rule, input layout and shapes."""

    node: fx.Node
    module: nn.Module | None
    rule: rules.LayerRule | None
    name: str  # the module's name, "" for functions and methods
    desc: str
    inp: Tracked | None
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


def is_depthwise(m: nn.Module) -> bool:
    """A conv with one filter per channel (groups == in == out): a per-channel op, not a producer."""
    return rules.module_rule(m) is rules.DEPTHWISE_CONV


class _Analyser:
    """Walks the traced graph once, assigning a layout to every tensor value and building the groups."""

    def __init__(self, graph: fx.Graph, root: nn.Module):
        self.graph = graph
        self.mods = dict(root.named_modules())
        self.parent: list[int] = []
        self.info: list[_Info] = []
        self.val: dict[fx.Node, Tracked | None] = {}
        self.uses: dict[str, ModuleUse] = {}

    # ---------------------------------------------------------------- union-find
    def new_group(self, width: int, lock: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.info.append(_Info(width, locks=[lock] if lock else []))
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if b < a:
            a, b = b, a
        ia, ib = self.info[a], self.info[b]
        if ia.width != ib.width:  # a caller bug: layouts are checked before they are merged
            raise AssertionError(f"merging channel groups of widths {ia.width} and {ib.width}")
        self.parent[b] = a
        ia.producers += ib.producers
        ia.passthrough += ib.passthrough
        ia.consumers += ib.consumers
        ia.locks += ib.locks
        ia.uniform += ib.uniform
        ia.is_output |= ib.is_output
        return a

    def g(self, gid: int) -> _Info:
        return self.info[self.find(gid)]

    def seg_width(self, s: Segment) -> int:
        return self.g(s.group).width * s.block

    def lock(self, layout: Layout | None, reason: str) -> None:
        for s in layout or ():
            self.g(s.group).locks.append(reason)

    def same_structure(self, a: Layout, b: Layout) -> bool:
        return len(a) == len(b) and all(
            x.block == y.block and self.seg_width(x) == self.seg_width(y) for x, y in zip(a, b)
        )

    def merge_layouts(self, layouts: list[Layout], why: str) -> Layout | None:
        """Union layouts that must share one mapping (elementwise ops); lock all if they do not align."""
        first = layouts[0]
        if all(self.same_structure(first, other) for other in layouts[1:]):
            for other in layouts[1:]:
                for x, y in zip(first, other):
                    self.union(x.group, y.group)
            return first
        for lay in layouts:
            self.lock(lay, why)
        return None

    # ---------------------------------------------------------------- helpers
    def tracked_args(self, node: fx.Node) -> list[tuple[fx.Node, Tracked]]:
        out = []
        for a in _flat_nodes((node.args, node.kwargs)):
            t = self.val.get(a)
            if t is not None:
                out.append((a, t))
        return out

    def lock_inputs(self, node: fx.Node, reason: str) -> None:
        for _, (_, lay) in self.tracked_args(node):
            self.lock(lay, reason)

    def note_pass(self, name: str, layout: Layout) -> None:
        for s in layout:
            info = self.g(s.group)
            if name not in info.passthrough:
                info.passthrough.append(name)

    def record_use(self, use: ModuleUse) -> ModuleUse:
        """Register a module's use; a module called twice must see the same groups both times."""
        old = self.uses.get(use.name)
        if old is None:
            self.uses[use.name] = use
            return use
        where = f"module {use.name!r} is called more than once on differently shaped channels"
        if old.produces is not None and use.produces is not None:
            self.union(old.produces, use.produces)
        for attr in ("consumes", "carries"):
            a, b = getattr(old, attr), getattr(use, attr)
            if a is not None and b is not None:
                self.merge_layouts([a, b], where)
            elif a is not None or b is not None:
                self.lock(a or b, where)
        return old

    # ---------------------------------------------------------------- walk
    def run(self) -> None:
        for node in self.graph.nodes:
            if node.op == "placeholder":
                self.val[node] = self.placeholder(node)
            elif node.op == "get_attr":
                self.val[node] = None
            elif node.op in ("call_module", "call_function", "call_method"):
                self.val[node] = self.call(node)
            elif node.op == "output":
                for a in _flat_nodes(node.args):
                    t = self.val.get(a)
                    for s in t[1] if t else ():
                        self.g(s.group).is_output = True

    def placeholder(self, node: fx.Node) -> Tracked | None:
        shape = shape_of(node)
        if not shape:
            return None
        dim = 1 if len(shape) >= 2 else 0
        gid = self.new_group(shape[dim], lock=f"the network input {node.target!r} has a fixed number of channels")
        return dim, (Segment(gid),)

    # ---------------------------------------------------------------- layers (modules, functions, methods)
    def call(self, node: fx.Node) -> Tracked | None:
        """One call: look its rule up in the registry and let the rule's role (and flow) say what happens."""
        m = self.mods[str(node.target)] if node.op == "call_module" else None
        x = node.args[0] if node.args else None
        c = _Call(
            node=node,
            module=m,
            rule=rules.node_rule(node.op, node.target, self.mods),
            name=str(node.target) if m is not None else "",
            desc=_describe(node, m),
            inp=self.val.get(x) if isinstance(x, fx.Node) else None,
            in_shape=shape_of(x),
            out_shape=shape_of(node),
        )
        if m is not None:
            extra = [a for a in _flat_nodes((node.args[1:], node.kwargs)) if self.val.get(a) is not None]
            if extra or c.out_shape is None:
                self.lock_inputs(node, f"{c.desc} takes or returns several tensors; netgrow cannot follow channels there")
                return None
        elif not self.tracked_args(node):
            return None
        if c.rule is not None and c.rule.flow == "size":
            return None  # reads sizes; the size-derived values adapt to the new widths by themselves
        if c.out_shape is None:
            self.lock_inputs(node, f"{c.desc} does not return a tensor; netgrow cannot follow these channels")
            return None
        if c.rule is None or c.rule.role == "boundary":
            return self.unknown(node, c.desc, c.rule.reason if c.rule is not None else None)
        if c.rule.role in ("producer", "consumer"):
            return self.producer(c)
        if c.rule.role == "channelwise":
            return self.channelwise(c)
        return getattr(self, f"flow_{c.rule.flow}")(c)

    def producer(self, c: _Call) -> Tracked | None:
        """Conv/Linear: the input channels are consumed, the output channels are a new group."""
        rule, name, inp = c.rule, c.name, c.inp
        ch_in = rules.resolve_dim(rule.in_dim, c.module, len(c.in_shape))
        consumes = None
        if inp is not None:
            if inp[0] == ch_in:
                consumes = inp[1]
            else:
                self.lock(inp[1], f"{c.desc} is applied along dim {ch_in} while these channels sit in dim {inp[0]}")
        gid = None
        if rule.role == "producer":
            ch_out = rules.resolve_dim(rule.out_dim, c.module, len(c.out_shape))
            gid = self.new_group(c.out_shape[ch_out])
            self.info[gid].producers.append(name)
        use = self.record_use(ModuleUse(name, "producer", consumes=consumes, produces=gid))
        if consumes is not None:
            offset = 0
            for s in consumes:
                self.g(s.group).consumers.append(Consumer(name, offset, s.block))
                offset += self.seg_width(s)
        if rule.reason:
            why = rule.reason.replace("{name}", repr(name))
            self.lock(consumes, why)
            if gid is not None:
                self.g(gid).locks.append(why)
        if gid is None:
            return None  # a consumer's output channels are fixed
        return ch_out, (Segment(self.find(use.produces)),)  # a module called twice produces one group

    def channelwise(self, c: _Call) -> Tracked | None:
        """Per-channel tensors along the channels (norms, PReLU, depthwise conv); norms may also mix them."""
        rule, inp = c.rule, c.inp
        if inp is None:
            return None
        dim, lay = inp
        nd = len(c.in_shape)
        if rule.normalises is not None:
            if dim not in rule.normalises(c.module, nd):
                return inp  # normalises over other, fixed dims
            if len(lay) > 1:
                self.lock(lay, f"{c.desc} normalises over channels of several concatenated groups at once")
                return inp
            if rule.in_dim is not None and (dim != rules.resolve_dim(rule.in_dim, c.module, nd) or lay[0].block != 1):
                self.lock(lay, f"{c.desc} groups channels that are not in dim {rule.in_dim}")
                return inp
            self.g(lay[0].group).uniform.append(
                f"{c.desc} normalises over these channels, so they can only grow by whole multiples of the width "
                f"with every unit replicated equally"
            )
        elif dim != rules.resolve_dim(rule.in_dim, c.module, nd):
            if rule.off_dim == "lock":
                self.lock(lay, f"{c.desc} convolves over dim {dim}, which holds these channels")
                return None
            return inp  # per-channel over another, fixed dim: these channels pass untouched
        pdim = rule.param_dim(c.module, nd, dim) if rule.param_dim is not None else 0
        self.note_pass(c.name, lay)
        self.record_use(ModuleUse(c.name, "channelwise", carries=lay, param_dim=pdim))
        return inp

    # ---------------------------------------------------------------- pass-through flows
    def flow_same(self, c: _Call) -> Tracked | None:
        """Acts on each element on its own (activations, dropout, casts)."""
        if c.module is not None:
            if c.inp is not None:
                self.note_pass(c.name, c.inp[1])
            return c.inp
        if c.inp is not None and len(self.tracked_args(c.node)) == 1 and c.in_shape == c.out_shape:
            return c.inp
        return self.flow_elementwise(c)

    def flow_cast(self, c: _Call) -> Tracked | None:
        """``.to(other)``/``.type_as(other)``: a tensor argument only lends its dtype/device."""
        if c.inp is not None and c.in_shape == c.out_shape:
            return c.inp
        return self.flow_same(c)

    def flow_spatial(self, c: _Call) -> Tracked | None:
        """Acts on the last k dims only, per channel (pooling, padding, upsampling)."""
        if c.module is None and len(self.tracked_args(c.node)) != 1:
            return self.unknown(c.node, c.desc)
        if c.inp is None:
            return None
        k = c.rule.spatial
        if k is None:  # F.pad: two numbers per padded dim
            k = len(_arg(c.node, 1, "pad", ())) // 2
        if k < 0:
            k = len(c.in_shape) + k
        hit = c.inp[0] >= len(c.in_shape) - k
        return self.pass_unless(c, hit, f"{c.desc} acts along dim {c.inp[0]}, which holds these channels")

    def flow_along(self, c: _Call) -> Tracked | None:
        """Softmax & co: mixes the units along ``dim``; passes channels sitting in any other dim."""
        if c.inp is None:
            return None
        dim = c.module.dim if c.module is not None else _arg(c.node, 1, "dim", None)
        hit = dim is None or _norm_dim(dim, len(c.in_shape)) == c.inp[0]
        return self.pass_unless(c, hit, f"{c.desc} normalises over these channels; replicated units would change it")

    def pass_unless(self, c: _Call, hit: bool, why: str) -> Tracked | None:
        """The channels pass through ``c`` unless it acts along their dim (``hit``): then they lock."""
        assert c.inp is not None
        if hit:
            self.lock(c.inp[1], why)
            return None
        if c.name:
            self.note_pass(c.name, c.inp[1])
        return c.inp

    def flow_flatten(self, c: _Call) -> Tracked | None:
        if c.inp is None:
            return None
        if c.module is not None:
            start, end = c.module.start_dim, c.module.end_dim
        else:
            start, end = _arg(c.node, 1, "start_dim", 0), _arg(c.node, 2, "end_dim", -1)
        nd = len(c.in_shape)
        start, end = _norm_dim(start, nd), _norm_dim(end, nd)
        dim, lay = c.inp
        if dim < start:
            return c.inp
        if dim > end:
            return dim - (end - start), lay
        if any(s != 1 for s in c.in_shape[start:dim]):
            self.lock(lay, f"{c.desc} interleaves these channels with dims {list(range(start, dim))} before them")
            return None
        block = math.prod(c.in_shape[dim + 1 : end + 1])
        return start, tuple(Segment(s.group, s.block * block) for s in lay)

    def unknown(self, node: fx.Node, desc: str, reason: str | None = None) -> None:
        if reason is None:
            reason = (
                "is not a layer type netgrow knows how to resize through"
                if node.op == "call_module"
                else "is an operation netgrow does not know how to resize through"
            )
        self.lock_inputs(node, f"{desc} {reason}")
        return None

    def flow_elementwise(self, c: _Call) -> Tracked | None:
        """Broadcasting elementwise ops: every operand's channels line up, so they share one mapping."""
        node, desc, out_shape = c.node, c.desc, c.out_shape
        nd = len(out_shape)
        dims: set[int] = set()
        layouts: list[Layout] = []
        for a, (dim, lay) in self.tracked_args(node):
            shape = shape_of(a) or ()
            od = dim + nd - len(shape)
            if shape[dim] == 1 and out_shape[od] != 1:
                self.lock(lay, f"{desc} broadcasts a single channel over dim {od}")
                return self.unknown(node, desc)
            dims.add(od)
            layouts.append(lay)
        if len(dims) != 1:
            self.lock_inputs(node, f"{desc} combines channels sitting in different dims {sorted(dims)}")
            return None
        od = dims.pop()
        for a in _flat_nodes((node.args, node.kwargs)):
            shape = shape_of(a)
            if shape is None or self.val.get(a) is not None:
                continue
            ad = od - (nd - len(shape))
            if 0 <= ad < len(shape) and shape[ad] != 1:
                self.lock_inputs(node, f"{desc} combines these channels with the fixed-size tensor {a.name!r}")
                return None
        merged = self.merge_layouts(layouts, f"{desc} combines channels laid out differently")
        return None if merged is None else (od, merged)

    def flow_cat(self, c: _Call) -> Tracked | None:
        node, desc, out_shape = c.node, c.desc, c.out_shape
        tensors = list(_arg(node, 0, "tensors", ()))
        nd = len(out_shape)
        dim = _norm_dim(_arg(node, 1, "dim", 0), nd)
        vals = [(a, self.val.get(a) if isinstance(a, fx.Node) else None) for a in tensors]
        tracked_dims = {t[0] for _, t in vals if t is not None}
        if tracked_dims == {dim}:
            layout: list[Segment] = []
            for a, t in vals:
                if t is not None:
                    layout += t[1]
                else:  # fixed channels concatenated in: a locked segment of their own
                    width = (shape_of(a) or (0,) * nd)[dim]
                    layout.append(Segment(self.new_group(width, lock=f"{desc} concatenates fixed channels of {a}")))
            return dim, tuple(layout)
        if len(tracked_dims) == 1 and all(t is not None for _, t in vals):
            merged = self.merge_layouts([t[1] for _, t in vals], f"{desc} stacks channels laid out differently")
            return None if merged is None else (tracked_dims.pop(), merged)
        return self.unknown(node, desc)

    def flow_reshape(self, c: _Call) -> Tracked | None:
        """A view that keeps each channel's elements contiguous and apart maps channel c to a block."""
        node, desc, inp, in_shape, out_shape = c.node, c.desc, c.inp, c.in_shape, c.out_shape
        if inp is None:
            return None
        dim, lay = inp
        width, inner = in_shape[dim], math.prod(in_shape[dim + 1 :])
        outer = math.prod(in_shape[:dim])
        sizes = list(node.args[1:]) if node.op == "call_method" else list(_arg(node, 1, "shape", ()))
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = list(sizes[0])
        for t in range(len(out_shape)):
            tail = math.prod(out_shape[t + 1 :])
            if math.prod(out_shape[:t]) == outer and out_shape[t] * tail == width * inner and inner % tail == 0:
                if len(sizes) == len(out_shape) and isinstance(sizes[t], int) and sizes[t] != -1:
                    self.lock(
                        lay,
                        f"{desc} hard-codes size {sizes[t]} for the dim holding these channels; "
                        f"write x.view(x.size(0), -1) or torch.flatten(x, 1) instead",
                    )
                    return None
                return t, tuple(Segment(s.group, s.block * (inner // tail)) for s in lay)
        self.lock(lay, f"{desc} splits or mixes these channels (shape {list(in_shape)} -> {list(out_shape)})")
        return None

    def flow_reduce(self, c: _Call) -> Tracked | None:
        node, desc, inp, in_shape = c.node, c.desc, c.inp, c.in_shape
        if inp is None or len(self.tracked_args(node)) != 1:
            return self.unknown(node, desc)
        dim, lay = inp
        nd = len(in_shape)
        red = _arg(node, 1, "dim", None)
        if red is None:
            red = list(range(nd))
        red = [_norm_dim(d, nd) for d in (red if isinstance(red, (tuple, list)) else [red])]
        keep = bool(_arg(node, 2, "keepdim", False))
        if dim in red:
            self.lock(lay, f"{desc} reduces over these channels; replicated units would change it")
            return None
        return (dim if keep else dim - sum(d < dim for d in red)), lay

    def flow_getitem(self, c: _Call) -> Tracked | None:
        if c.inp is None:
            return self.unknown(c.node, c.desc)
        dim, lay = c.inp
        idx = c.node.args[1]
        idx = idx if isinstance(idx, tuple) else (idx,)
        full = slice(None, None, None)
        if all(isinstance(i, (int, slice)) and not isinstance(i, bool) for i in idx):
            if dim >= len(idx) or idx[dim] == full:
                return dim - sum(isinstance(i, int) for i in idx[:dim]), lay
        self.lock(lay, f"{c.desc} indexes into the dim holding these channels")
        return None

    def flow_permute(self, c: _Call) -> Tracked | None:
        if c.inp is None:
            return None
        node, (dim, lay), nd = c.node, c.inp, len(c.in_shape)
        kind = node.target if node.op == "call_method" else node.target.__name__
        if kind in ("transpose", "swapaxes", "t"):
            a, b = (0, 1) if kind == "t" else (_norm_dim(node.args[1], nd), _norm_dim(node.args[2], nd))
            return (b if dim == a else a if dim == b else dim), lay
        order = node.args[1:] if node.op == "call_method" else node.args[1]
        if len(order) == 1 and isinstance(order[0], (tuple, list)):
            order = order[0]
        order = [_norm_dim(d, nd) for d in order]
        return order.index(dim), lay

    def flow_unsqueeze(self, c: _Call) -> Tracked | None:
        if c.inp is None:
            return None
        d = _norm_dim(_arg(c.node, 1, "dim", 0), len(c.in_shape) + 1)
        return (c.inp[0] + 1 if d <= c.inp[0] else c.inp[0]), c.inp[1]

    def flow_squeeze(self, c: _Call) -> Tracked | None:
        if c.inp is None:
            return None
        dim, lay = c.inp
        in_shape = c.in_shape
        arg = _arg(c.node, 1, "dim", None)
        if arg is None:
            dims: Any = range(len(in_shape))
        else:
            dims = [_norm_dim(d, len(in_shape)) for d in (arg if isinstance(arg, (tuple, list)) else [arg])]
        gone = [d for d in dims if in_shape[d] == 1]
        if dim in gone:
            self.lock(lay, f"{c.desc} squeezes away the dim holding these channels")
            return None
        return dim - sum(d < dim for d in gone), lay

    # ---------------------------------------------------------------- result
    def result(self) -> ChannelGraph:
        roots = sorted({self.find(i) for i in range(len(self.parent))})
        new_id = {r: i for i, r in enumerate(roots)}
        groups = []
        for r in roots:
            info = self.info[r]
            locks = list(dict.fromkeys(info.locks))
            groups.append(
                ChannelGroup(
                    id=new_id[r],
                    width=info.width,
                    producers=list(dict.fromkeys(info.producers)),
                    passthrough=list(dict.fromkeys(info.passthrough)),
                    consumers=list(dict.fromkeys(info.consumers)),
                    locked=bool(locks),
                    reason="; ".join(locks) or None,
                    is_output=info.is_output,
                    uniform=info.uniform[0] if info.uniform else None,
                )
            )

        def remap(layout: Layout | None) -> Layout | None:
            return None if layout is None else tuple(Segment(new_id[self.find(s.group)], s.block) for s in layout)

        modules = {
            name: ModuleUse(
                name,
                u.kind,
                consumes=remap(u.consumes),
                produces=None if u.produces is None else new_id[self.find(u.produces)],
                carries=remap(u.carries),
                param_dim=u.param_dim,
            )
            for name, u in self.uses.items()
        }
        return ChannelGraph(groups, modules)


# ------------------------------------------------------------------------------------------ small helpers
def _flat_nodes(obj: Any) -> Iterator[fx.Node]:
    if isinstance(obj, fx.Node):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _flat_nodes(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flat_nodes(o)


def _describe(node: fx.Node, module: nn.Module | None) -> str:
    if module is not None:
        return f"module {str(node.target)!r} ({type(module).__name__})"
    if node.op == "call_method":
        return f".{node.target}() at node {node.name!r}"
    return f"{getattr(node.target, '__name__', node.target)} at node {node.name!r}"


def _arg(node: fx.Node, pos: int, name: str, default: Any) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(name, default)


def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


# ------------------------------------------------------------------------------------------ entry points
def analyse(model: nn.Module, example_input: torch.Tensor) -> ChannelGraph:
    """Trace ``model``, propagate shapes on ``example_input`` and return its channel graph.

    The model is not changed (shapes are propagated on a meta-device copy, or in eval mode under
    ``no_grad`` with the training flags restored).
    """
    analyser = _Analyser(*trace_with_shapes(model, example_input))
    analyser.run()
    graph = analyser.result()
    log.debug("%s: %d channel groups", type(model).__name__, len(graph.groups))
    return graph


def channel_groups(model: nn.Module, example_input: torch.Tensor) -> list[ChannelGroup]:
    """The groups of coupled channel dimensions of ``model`` (see ``ChannelGroup``).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [(g.producers, g.width, g.resizable) for g in channel_groups(net, torch.randn(3, 4))]
        [([], 4, False), (['0'], 8, True), (['2'], 2, False)]
    """
    check_example_input(model, example_input, "channel_groups")
    return analyse(model, example_input).groups
