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

import itertools
import logging
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import torch
from torch import fx, nn

from netgrow.graph import rules
from netgrow.graph.capture import EXPORTED, capture
from netgrow.graph.example_input import check_example_input
from netgrow.graph.trace import shape_of

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
    unit: int = 1  # channels per unit of the first producer's output (head_dim for attention heads)

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
class _Multi:
    """The value of ``split``/``chunk``: one tracked value (or ``None``) per piece."""

    items: list[Any]


@dataclass
class ModuleUse:
    """How one module's tensors touch channel groups.

    ``kind="producer"``: a Conv/Linear; ``consumes`` is the layout of its input dim (``None`` if fixed),
    ``produces`` the group of its output dim. ``kind="channelwise"``: a module with per-channel tensors
    (BatchNorm, LayerNorm, GroupNorm, PReLU, depthwise conv); ``carries`` is the layout of those tensors'
    dimension ``param_dim``. ``kind="param"``: one parameter used directly in forward (``get_attr``: an
    RMSNorm weight, a learned positional embedding); ``name`` is its ``named_parameters()`` path and
    ``carries`` the layout of its dimension ``param_dim``, copied by the mapping like a norm's weight.
    """

    name: str
    kind: Literal["producer", "channelwise", "param"]
    consumes: Layout | None = None
    produces: int | None = None
    carries: Layout | None = None
    param_dim: int = 0
    out_layout: Layout | None = None  # producers: the output dim's segments (heads: block = head_dim; split: parts)
    in_dim: int = 1  # kind="param" with ``consumes``: the parameter dim that sums over those channels
    feeds_from: str | None = None  # producers: the channel-wise use whose output is this layer's only input


@dataclass
class ChannelGraph:
    """The result of the analysis: groups plus, per module, which groups its tensors are indexed by."""

    groups: list[ChannelGroup]
    modules: dict[str, ModuleUse]
    # (module path, size, layout, attributes): a literal size (a split size, a head count) that an int attribute
    # of the module running the op holds; the ops set those attributes (named as ``names_a_size`` allows) to
    # the layout's new width (GPT2Attention.split_size, nanoGPT's n_embd / n_head, OPT's num_heads)
    sizes: list[tuple[str, int, Layout, tuple[str, ...]]] = field(default_factory=list)

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
    width: int  # in units (a unit = ``unit`` base channels of each member group; heads: head_dim)
    producers: list[str] = field(default_factory=list)
    passthrough: list[str] = field(default_factory=list)
    consumers: list[tuple[Consumer, int]] = field(default_factory=list)  # with the member group it was seen on
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


HEAD_COUNT = ("<number of heads>",)  # ChannelGraph.sizes: update attributes named like a head count


_WIDTH_WORDS = ("size", "embd", "embed", "dim", "width", "hidden", "features", "channels", "nf")


def names_a_size(attr: str, attrs: tuple[str, ...]) -> bool:
    """Whether attribute ``attr`` may hold a size of ``ChannelGraph.sizes`` with these ``attrs``: the named
    ones; ``HEAD_COUNT``: num_heads, n_head, num_attention_heads (never head_dim/head_size); ``()``: a public
    attribute named like a width (split_size, embed_dim, n_embd, hidden_size, ...)."""
    if attrs == HEAD_COUNT:
        return "head" in attr and not any(w in attr for w in ("dim", "size", "mask", "idx"))
    if attrs:
        return attr in attrs
    return not attr.startswith("_") and any(w in attr.lower() for w in _WIDTH_WORDS)
_COPIES = ("clone", "contiguous", "to", "float", "double", "type", "type_as")


def is_depthwise(m: nn.Module) -> bool:
    """A conv with one filter per channel (groups == in == out): a per-channel op, not a producer."""
    return rules.module_rule(m) is rules.DEPTHWISE_CONV


class _Analyser:
    """Walks the traced graph once, assigning a layout to every tensor value and building the groups."""

    def __init__(self, graph: fx.Graph, root: nn.Module):
        self.graph = graph
        self.mods = dict(root.named_modules())
        self.params = dict(root.named_parameters(remove_duplicate=False))
        # an exported graph has every size specialised to the example: its view sizes are not hard-coded widths
        self.specialised = bool(getattr(graph, EXPORTED, False))
        self.parent: list[int] = []
        self.info: list[_Info] = []
        # Segment blocks are counted per *base* channel of their group (a Fraction after a split into heads);
        # unit[g] base channels of member group g move together, members[root] lists a root's member groups,
        # parts[g] the groups a split divided g into.
        self.unit: list[int] = []
        self.members: list[list[int]] = []
        self.parts: dict[int, list[int]] = {}
        self.val: dict[fx.Node, Any] = {}
        self.uses: dict[str, ModuleUse] = {}
        self.affine: dict[fx.Node, str] = {}  # value -> the channel-wise use that computed it (see feeds_from)
        # a parameter read directly, or sliced along other dims: (name, the parameter dim of each value dim)
        self.param_views: dict[fx.Node, tuple[str, list[int | None]]] = {}
        self.derived: set[fx.Node] = set()  # param views computed from a parameter (1 + w): not a plain scale
        self.sizes: list[tuple[str, int, Layout, tuple[str, ...]]] = []

    # ---------------------------------------------------------------- union-find
    def new_group(self, width: int, lock: str | None = None) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.info.append(_Info(width, locks=[lock] if lock else []))
        self.unit.append(1)
        self.members.append([gid])
        return gid


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
        self.members[a] += self.members[b]
        ia.producers += ib.producers
        ia.passthrough += ib.passthrough
        ia.consumers += ib.consumers
        ia.locks += ib.locks
        ia.uniform += ib.uniform
        ia.is_output |= ib.is_output
        return a

    def g(self, gid: int) -> _Info:
        return self.info[self.find(gid)]

    def eff_block(self, s: Segment) -> Fraction:
        """Positions per unit of the segment's group (an integer once the group is refined enough)."""
        return Fraction(s.block) * self.unit[s.group]

    def seg_width(self, s: Segment) -> int:
        return int(self.g(s.group).width * self.eff_block(s))

    def refine(self, gid: int, k: int) -> bool:
        """Make ``k`` consecutive units of ``gid``'s group one unit (heads of head_dim channels; GQA groups)."""
        root = self.find(gid)
        info = self.info[root]
        if k == 1:
            return True
        if info.width % k:
            return False
        info.width //= k
        for m in self.members[root]:
            self.unit[m] *= k
        return True

    def expand(self, layout: Layout | None) -> Layout | None:
        """``layout`` with every group a split divided replaced by its parts."""
        if layout is None or not any(s.group in self.parts for s in layout):
            return layout
        out: list[Segment] = []
        for s in layout:
            if s.group in self.parts:
                out += self.expand(tuple(Segment(p, s.block) for p in self.parts[s.group]))  # type: ignore[operator]
            else:
                out.append(s)
        return tuple(out)

    def value(self, node: Any) -> Any:
        """The tracked (dim, layout) of a node's value, with split groups expanded (``None``: fixed)."""
        t = self.val.get(node) if isinstance(node, fx.Node) else None
        if isinstance(t, tuple):
            return t[0], self.expand(t[1])
        return t

    def partition(self, gid: int, sizes: list[int]) -> bool:
        """Divide a not yet merged, unrefined group into consecutive parts of ``sizes`` channels (a split)."""
        root = self.find(gid)
        if self.members[root] != [gid] or self.unit[gid] != 1 or sum(sizes) != self.info[root].width:
            return False
        info = self.info[root]
        parts, offset = [], 0
        for size in sizes:
            p = self.new_group(size)
            pi = self.info[p]
            pi.producers, pi.passthrough = list(info.producers), list(info.passthrough)
            pi.locks, pi.uniform, pi.is_output = list(info.locks), list(info.uniform), info.is_output
            pi.consumers = [
                (Consumer(c.module, c.offset + int(offset * Fraction(c.block)), c.block), p) for c, _ in info.consumers
            ]
            parts.append(p)
            offset += size
        self.parts[gid] = parts
        return True

    def lock(self, layout: Layout | None, reason: str) -> None:
        for s in self.expand(layout) or ():
            self.g(s.group).locks.append(reason)

    def same_structure(self, a: Layout, b: Layout) -> bool:
        return len(a) == len(b) and all(self.seg_width(x) == self.seg_width(y) for x, y in zip(a, b))

    def align(self, x: Segment, y: Segment) -> bool:
        """Unite two segments covering the same positions; coarsen the finer group's units if needed
        (GQA: a key/value head's unit covers the query heads that share it)."""
        ex, ey = self.eff_block(x), self.eff_block(y)
        if ex != ey:
            if self.find(x.group) == self.find(y.group):
                return False
            fine, ratio = (x, ey / ex) if ex < ey else (y, ex / ey)
            if ratio.denominator != 1 or not self.refine(fine.group, int(ratio)):
                return False
        self.union(x.group, y.group)
        return True

    def merge_layouts(self, layouts: list[Layout], why: str) -> Layout | None:
        """Union layouts that must share one mapping (elementwise ops); lock all if they do not align."""
        layouts = [self.expand(lay) for lay in layouts]  # type: ignore[misc]
        first = layouts[0]
        if all(self.same_structure(first, other) for other in layouts[1:]):
            if all(self.align(x, y) for other in layouts[1:] for x, y in zip(first, other)):
                return first
        for lay in layouts:
            self.lock(lay, why)
        return None

    # ---------------------------------------------------------------- helpers
    def tracked_args(self, node: fx.Node) -> list[tuple[fx.Node, Tracked]]:
        out = []
        for a in _flat_nodes((node.args, node.kwargs)):
            t = self.value(a)
            if isinstance(t, _Multi):
                out += [(a, i) for i in t.items if i is not None]
            elif t is not None:
                out.append((a, t))
        return out

    def lock_inputs(self, node: fx.Node, reason: str) -> None:
        for _, (_, lay) in self.tracked_args(node):
            self.lock(lay, reason)

    def note_pass(self, name: str, layout: Layout) -> None:
        for s in self.expand(layout) or ():
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
                shape = shape_of(node)
                if str(node.target) in self.params and shape is not None:
                    self.param_views[node] = (str(node.target), list(range(len(shape))))
            elif node.target is operator.getitem and node.args and node.args[0] in self.param_views:
                self.val[node] = None
                self.slice_param(node)
            elif node.op in ("call_module", "call_function", "call_method"):
                self.val[node] = self.call(node)
                self.keep_affine(node)
                self.derive_param(node)
            elif node.op == "output":
                for a in _flat_nodes(node.args):
                    t = self.value(a)
                    for s in t[1] if isinstance(t, tuple) else ():
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
            inp=self.value(x),
            in_shape=shape_of(x),
            out_shape=shape_of(node),
        )
        if m is not None and c.rule is not None and c.rule.flow == "multihead":
            return self.flow_multihead(c)
        if m is not None:
            extra = [a for a in _flat_nodes((node.args[1:], node.kwargs)) if self.val.get(a) is not None]
            if extra or c.out_shape is None or isinstance(c.inp, _Multi):
                self.lock_inputs(node, f"{c.desc} takes or returns several tensors; netgrow cannot follow channels there")
                return None
        elif not self.tracked_args(node):
            return None
        if c.rule is not None and c.rule.flow == "size":
            return None  # reads sizes; the size-derived values adapt to the new widths by themselves
        if isinstance(c.inp, _Multi):  # pieces of a split: only indexing picks one
            if node.target is operator.getitem and isinstance(node.args[1], int):
                i = node.args[1]
                return c.inp.items[i] if -len(c.inp.items) <= i < len(c.inp.items) else self.unknown(node, c.desc)
            return self.unknown(node, c.desc)
        if c.rule is not None and c.rule.flow == "split":
            return self.flow_split(c)
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

    def derive_param(self, node: fx.Node) -> None:
        """``1 + weight``, ``weight.float()``: an elementwise function of one parameter alone still follows the
        parameter's channels (Gemma's RMSNorm scales by ``1 + weight``)."""
        if node.op == "call_module" or self.val.get(node) is not None:
            return
        args = list(_flat_nodes((node.args, node.kwargs)))
        rule = rules.node_rule(node.op, node.target, self.mods)
        if len(args) != 1 or args[0] not in self.param_views or rule is None:
            return
        if rule.flow in ("same", "cast", "elementwise") and rule.role == "passthrough":
            if shape_of(node) == shape_of(args[0]):
                self.param_views[node] = self.param_views[args[0]]
                self.derived.add(node)
        elif rule.flow == "expand":  # cls_token.expand(B, -1, -1): the channels stay where they were
            out, inp = shape_of(node), shape_of(args[0])
            if out is not None and inp is not None and len(out) == len(inp):
                name, dims = self.param_views[args[0]]
                self.param_views[node] = (name, [d if out[i] == inp[i] else None for i, d in enumerate(dims)])

    def slice_param(self, node: fx.Node) -> None:
        """``pos_emb[:, :T]``: a parameter sliced along other dims is still that parameter, dim for dim."""
        name, dims = self.param_views[node.args[0]]  # type: ignore[index]
        idx = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        if not all(isinstance(i, (int, slice)) and not isinstance(i, bool) for i in idx) or len(idx) > len(dims):
            return
        out: list[int | None] = []
        for d, i in enumerate(idx):
            if isinstance(i, slice):  # a slice keeps the dim; only full slices keep every channel
                out.append(dims[d] if i == slice(None) else None)
        out += dims[len(idx) :]
        self.param_views[node] = (name, out)

    def note_size(self, node: fx.Node, size: int, layout: Layout, attrs: tuple[str, ...] = ()) -> None:
        """Remember a literal size covering these channels that an attribute of the module running the node
        holds (or may hold, in a specialised graph), so the ops update it (see ``ChannelGraph.sizes``)."""
        stack = node.meta.get("nn_module_stack") or {}
        if stack and (self.specialised or self.size_attribute(node, size, attrs)):
            self.sizes.append((list(stack.values())[-1][0], int(size), layout, attrs))

    def size_attribute(self, node: fx.Node, size: int, attrs: tuple[str, ...]) -> bool:
        """Whether the module whose forward ran ``node`` has an int attribute equal to ``size`` (``attrs``:
        which names count, see ``names_a_size``): then the literal was read from it and can follow."""
        stack = node.meta.get("nn_module_stack") or {}
        module = self.mods.get(list(stack.values())[-1][0]) if stack else None
        return module is not None and any(
            type(v) is int and v == size and names_a_size(k, attrs) for k, v in vars(module).items()
        )

    def keep_affine(self, node: fx.Node) -> None:
        """Reshapes and slices of other dims keep each channel's values: the channel-wise source stays."""
        x = node.args[0] if node.args else None
        name = getattr(node.target, "__name__", node.target)
        out, inp = self.value(node), self.value(x)
        if name in ("reshape", "view", "getitem", "contiguous") and isinstance(out, tuple) and isinstance(inp, tuple):
            if out[1] == inp[1]:
                self.pass_affine(node)

    def pass_affine(self, node: fx.Node) -> None:
        """A value-preserving op (dropout in eval, a copy) keeps its input's channel-wise source."""
        x = node.args[0] if node.args else None
        if isinstance(x, fx.Node) and x in self.affine and len(x.users) == 1:
            self.affine[node] = self.affine[x]

    def producer(self, c: _Call) -> Tracked | None:
        """Conv/Linear: the input channels are consumed, the output channels are a new group."""
        rule, name, inp = c.rule, c.name, c.inp
        consumes = None
        if rule.in_dim is not None and inp is not None:  # (a lookup's input holds token ids, never channels)
            ch_in = rules.resolve_dim(rule.in_dim, c.module, len(c.in_shape))
            if inp[0] == ch_in:
                consumes = inp[1]
            else:
                self.lock(inp[1], f"{c.desc} is applied along dim {ch_in} while these channels sit in dim {inp[0]}")
        gid = None
        if rule.role == "producer":
            ch_out = rules.resolve_dim(rule.out_dim, c.module, len(c.out_shape))
            gid = self.new_group(c.out_shape[ch_out])
            self.info[gid].producers.append(name)
        x = c.node.args[0] if c.node.args else None
        feeds = self.affine.get(x) if isinstance(x, fx.Node) and len(x.users) == 1 else None
        use = self.record_use(
            ModuleUse(
                name, "producer", consumes=consumes, produces=gid,
                out_layout=None if gid is None else (Segment(gid),), feeds_from=feeds,
            )
        )  # fmt: skip
        if consumes is not None and use.consumes is consumes:
            offset = 0
            for s in consumes:
                self.g(s.group).consumers.append((Consumer(name, offset, s.block), s.group))  # type: ignore[arg-type]
                offset += self.seg_width(s)
        if rule.reason:
            why = rule.reason.replace("{name}", repr(name))
            self.lock(consumes, why)
            if gid is not None:
                self.g(gid).locks.append(why)
        if gid is None:
            return None  # a consumer's output channels are fixed
        return ch_out, (Segment(use.produces),)  # type: ignore[arg-type]  # a module called twice: one group

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
        if rule.normalises is not None and c.module is not None and getattr(c.module, "weight", None) is not None:
            self.affine[c.node] = c.name  # a norm's affine output: a tied head after it may take its division
        return inp

    # ---------------------------------------------------------------- pass-through flows
    def flow_same(self, c: _Call) -> Tracked | None:
        """Acts on each element on its own (activations, dropout, casts)."""
        if c.module is not None:
            if c.inp is not None:
                self.note_pass(c.name, c.inp[1])
                if c.rule.keeps_range and not c.rule.activation:  # dropout (identity in eval), Identity
                    self.pass_affine(c.node)
            return c.inp
        if c.inp is not None and len(self.tracked_args(c.node)) == 1 and c.in_shape == c.out_shape:
            if c.rule.keeps_range and not c.rule.activation or c.node.target in _COPIES:
                self.pass_affine(c.node)
            return c.inp
        return self.flow_elementwise(c)

    def flow_cast(self, c: _Call) -> Tracked | None:
        """``.to(other)``/``.type_as(other)``: a tensor argument only lends its dtype/device."""
        if c.inp is not None and c.in_shape == c.out_shape:
            self.pass_affine(c.node)
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
        params: list[tuple[str, int]] = []
        derived = False
        for a in _flat_nodes((node.args, node.kwargs)):
            shape = shape_of(a)
            if shape is None or self.val.get(a) is not None:
                continue
            ad = od - (nd - len(shape))
            if 0 <= ad < len(shape) and shape[ad] != 1:
                view = self.param_views.get(a)
                if view is not None and view[1][ad] is not None and shape[ad] == out_shape[od]:
                    params.append((view[0], view[1][ad]))  # a parameter used directly: it follows the channels
                    derived |= a in self.derived
                    continue
                self.lock_inputs(node, f"{desc} combines these channels with the fixed-size tensor {a.name!r}")
                return None
        merged = self.merge_layouts(layouts, f"{desc} combines channels laid out differently")
        if merged is None:
            return None
        for pname, pdim in params:
            self.record_use(ModuleUse(pname, "param", carries=merged, param_dim=pdim))
            self.note_pass(pname, merged)
            if len(params) == 1 and len(layouts) == 1 and not derived and node.target in (torch.mul, operator.mul, "mul"):
                self.affine[node] = pname  # x * weight: a norm's scale, which a tied head may absorb
        return od, merged

    def flow_cat(self, c: _Call) -> Tracked | None:
        node, desc, out_shape = c.node, c.desc, c.out_shape
        tensors = list(_arg(node, 0, "tensors", ()))
        nd = len(out_shape)
        dim = _norm_dim(_arg(node, 1, "dim", 0), nd)
        vals = [(a, self.value(a)) for a in tensors]
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
        params = [(a, self.param_views.get(a)) for a, t in vals if t is None]
        if len(tracked_dims) == 1 and all(v is not None for _, v in params):
            od = next(iter(tracked_dims))
            merged = self.merge_layouts([t[1] for _, t in vals if t is not None], f"{desc} stacks channels laid out differently")
            if merged is None:
                return None
            for a, (pname, pdims) in params:  # type: ignore[misc]  # a class token joined along the sequence
                if pdims[od] is None or (shape_of(a) or ())[od] != out_shape[od]:
                    return self.unknown(node, desc)
                self.record_use(ModuleUse(pname, "param", carries=merged, param_dim=pdims[od]))
                self.note_pass(pname, merged)
            return od, merged
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
            if math.prod(out_shape[:t]) != outer or out_shape[t] * tail != width * inner:
                continue
            if inner % tail and tail % inner:
                continue
            hard = len(sizes) == len(out_shape) and isinstance(sizes[t], int) and sizes[t] != -1
            from_attr = hard and tail > inner and self.size_attribute(node, sizes[t], HEAD_COUNT)
            if hard and not self.specialised and tail > inner and not from_attr:
                self.lock(
                    lay,
                    f"{desc} splits or mixes these channels (shape {list(in_shape)} -> {list(out_shape)}) with a "
                    f"hard-coded {sizes[t]}; a split into heads must say -1 there (x.view(B, T, -1, head_dim))",
                )
                return None
            if hard and not self.specialised and out_shape[t] != in_shape[dim] and not from_attr:
                self.lock(
                    lay,
                    f"{desc} hard-codes size {sizes[t]} for the dim holding these channels; "
                    f"write -1 there (x.view(x.size(0), -1), x.view(B, T, -1, head_dim)) or torch.flatten(x, 1)",
                )
                return None
            ratio = Fraction(inner, tail)  # < 1: the dim is split into (units, within-unit) dims, e.g. heads
            new = tuple(Segment(s.group, s.block * ratio) for s in lay)
            if hard and ratio < 1 and (self.specialised or from_attr):  # view(B, T, self.n_head, hd)
                self.note_size(node, sizes[t], new, HEAD_COUNT)
            for old_s, new_s in zip(lay, new):
                e = self.eff_block(new_s)
                if e.denominator != 1 and not self.refine(new_s.group, e.denominator):
                    self.lock(lay, f"{desc} splits these channels into pieces of {tail // inner}, which do not "
                                   f"divide the channels of {self.g(old_s.group).producers or 'the group'}")
                    return None
            return t, new
        self.lock(lay, f"{desc} splits or mixes these channels (shape {list(in_shape)} -> {list(out_shape)})")
        return None


    def flow_split(self, c: _Call) -> _Multi | None:
        """``split``/``chunk``: the mirror of ``cat`` (a fused q/k/v projection divides its group in three)."""
        node, desc, inp, in_shape = c.node, c.desc, c.inp, c.in_shape
        chunk = node.target in (torch.chunk, "chunk")
        if inp is None:
            return None
        dim, lay = inp
        nd = len(in_shape)
        along = _norm_dim(_arg(node, 2, "dim", 0), nd)
        if along != dim:  # pieces along another dim all carry the same channels
            n = _arg(node, 1, "chunks" if chunk else "split_size_or_sections", 1)
            count = n if chunk else (len(n) if isinstance(n, (list, tuple)) else -(-in_shape[along] // n))
            return _Multi([inp] * int(count))
        size = in_shape[dim]
        arg = _arg(node, 1, "chunks" if chunk else "split_size_or_sections", None)
        literal = isinstance(arg, int) or (isinstance(arg, (list, tuple)) and all(isinstance(v, int) for v in arg))
        if not literal or (chunk and not isinstance(arg, int)):
            self.lock(lay, f"{desc} reads its piece sizes from a tensor size, which would not follow a new width; "
                           f"use .chunk(n, dim)")
            return None
        if chunk:
            step = -(-size // int(arg))
            sizes = [min(step, size - i) for i in range(0, size, step)]
        elif isinstance(arg, int):
            sizes = [min(arg, size - i) for i in range(0, size, arg)]
        else:
            sizes = [int(v) for v in arg]
        from_attr = isinstance(arg, int) and self.size_attribute(node, arg, ())  # split(self.n_embd, dim=2)
        if not chunk and len(sizes) > 1 and not self.specialised and not from_attr:
            self.lock(lay, f"{desc} hard-codes pieces of {arg} channels, which would not follow a new width; "
                           f"use .chunk(n, dim)")
            return None
        # equal pieces (chunk, or one split size) must stay equal: they share one mapping
        equal = chunk or isinstance(arg, int)
        if equal and len(set(sizes)) > 1:
            self.lock(lay, f"{desc} cuts these channels into unequal pieces {sizes}")
            return None
        cuts = set(itertools.accumulate(sizes))
        pos = 0
        for s in lay:  # divide every segment a cut falls inside
            w, e = self.seg_width(s), self.eff_block(s)
            inner = sorted(c - pos for c in cuts if pos < c < pos + w)
            if inner:
                bounds = [0, *inner, w]
                pieces = [Fraction(b - a) / e for a, b in zip(bounds, bounds[1:])]
                if any(p.denominator != 1 for p in pieces) or not self.partition(s.group, [int(p) for p in pieces]):
                    self.lock(lay, f"{desc} cuts through channels already joined with others; netgrow splits "
                                   f"only a layer's own output (e.g. a fused q/k/v projection)")
                    return None
            pos += w
        lay = self.expand(lay)
        items, pos, k = [], 0, 0
        for size in sizes:
            piece: list[Segment] = []
            while pos < sum(sizes[: len(items) + 1]) and k < len(lay):
                piece.append(lay[k])
                pos += self.seg_width(lay[k])
                k += 1
            items.append((dim, tuple(piece)))
        if equal and len(items) > 1:
            merged = self.merge_layouts([t[1] for t in items], f"{desc} cuts channels laid out differently")
            if merged is None:
                return None
            if isinstance(arg, int) and not chunk:
                self.note_size(node, arg, merged)
        return _Multi(items)

    def flow_multihead(self, c: _Call) -> _Multi | None:
        """``nn.MultiheadAttention`` as one composite layer: ``in_proj`` consumes the query/key/value channels
        and produces 3 x heads (units of head_dim), ``out_proj`` consumes the heads and produces a new group.
        The module needs query width == embed_dim == heads x head_dim, so the input channels are united with
        the heads (in whole heads: the stream's units become head_dim channels)."""
        node, m, name, desc = c.node, c.module, c.name, c.desc
        q, k, v = (_arg(node, i, n, None) for i, n in enumerate(("query", "key", "value")))
        vals = [self.value(t) for t in (q, k, v)]
        tracked = [t for t in vals if t is not None]
        shape = shape_of(q)
        users = [u for u in node.users if not (u.target is operator.getitem and (u.args[1] == 0 or not u.users))]
        problem = None
        if not m._qkv_same_embed_dim or m.in_proj_weight is None:
            problem = "has separate key/value widths (kdim/vdim)"
        elif len(tracked) != 3 or any(t[0] != len(shape or ()) - 1 for t in tracked):
            problem = "gets fixed or misplaced channels for some of query, key, value"
        elif users:
            problem = "returns head-averaged attention weights that are used, which replicated heads would change"
        if problem:
            self.lock_inputs(node, f"{desc} {problem}")
            return None
        stream = self.merge_layouts([t[1] for t in tracked], f"{desc} gets query/key/value laid out differently")
        if stream is None:
            return None
        heads = self.new_group(m.embed_dim)
        if not self.refine(heads, m.head_dim):
            self.lock(stream, f"{desc}: embed_dim {m.embed_dim} is not whole heads of {m.head_dim}")
            return None
        head_seg = Segment(heads)
        merged = self.merge_layouts([stream, (head_seg,)], f"{desc} needs its input width to equal its heads' width")
        if merged is None:
            return None
        in_proj = f"{name}.in_proj_weight"
        self.record_use(ModuleUse(in_proj, "param", consumes=stream, carries=(head_seg,) * 3, param_dim=0))
        self.record_use(ModuleUse(f"{name}.in_proj_bias", "param", carries=(head_seg,) * 3, param_dim=0))
        offset = 0
        for s in stream:
            self.g(s.group).consumers.append((Consumer(in_proj, offset, s.block), s.group))  # type: ignore[arg-type]
            offset += self.seg_width(s)
        out = self.new_group(m.out_proj.out_features)
        out_name = f"{name}.out_proj"
        self.info[out].producers.append(out_name)
        self.record_use(ModuleUse(out_name, "producer", consumes=(head_seg,), produces=out, out_layout=(Segment(out),)))
        self.g(heads).consumers.append((Consumer(out_name, 0, 1), heads))
        self.sizes.append((name, m.embed_dim, (head_seg,), ("embed_dim", "kdim", "vdim")))
        self.sizes.append((name, m.num_heads, (Segment(heads, Fraction(1, m.head_dim)),), ("num_heads",)))
        return _Multi([(len(shape) - 1, (Segment(out),)), None])

    def flow_contraction(self, c: _Call) -> Tracked | None:
        """``a @ b`` of two activations: batch dims join their groups; a contracted group is locked."""
        node, desc = c.node, c.desc
        a, b = node.args[0], node.args[1]
        ta, tb = self.value(a), self.value(b)
        sa, sb, so = shape_of(a), shape_of(b), shape_of(node)
        if sa is None or sb is None or so is None or len(sa) < 2 or len(sb) < 2:
            return self.unknown(node, desc)
        out: list[Tracked] = []
        for t, shape, contracted, kept in ((ta, sa, len(sa) - 1, len(so) - 2), (tb, sb, len(sb) - 2, len(so) - 1)):
            if t is None:
                continue
            if t[0] == contracted:
                self.lock(t[1], f"{desc} sums over these channels together with another activation")
                return None
            if t[0] in (len(shape) - 1, len(shape) - 2):
                out.append((kept, t[1]))
            else:
                od = t[0] + len(so) - len(shape)
                if shape[t[0]] != so[od]:
                    return self.unknown(node, desc)
                out.append((od, t[1]))
        if not out:
            return None
        dims = {d for d, _ in out}
        if len(dims) != 1:
            self.lock_inputs(node, f"{desc} puts channels of its operands in different dims {sorted(dims)}")
            return None
        merged = self.merge_layouts([lay for _, lay in out], f"{desc} joins channels laid out differently")
        return None if merged is None else (dims.pop(), merged)

    def flow_attention(self, c: _Call) -> Tracked | None:
        """``scaled_dot_product_attention(q, k, v, mask)``: heads of q, k and v are one group (q @ k^T per head,
        then @ v), the head dim is contracted (never resized); GQA (``enable_gqa``) keeps key/value groups."""
        node, desc = c.node, c.desc
        q, k, v = (_arg(node, i, n, None) for i, n in enumerate(("query", "key", "value")))
        vals = [self.value(t) for t in (q, k, v)]
        mask = _arg(node, 3, "attn_mask", None)
        if self.value(mask) is not None or any(t is None for t in vals):
            self.lock_inputs(node, f"{desc} mixes channels of its mask, or of only some of q, k, v")
            return None
        nd = len(shape_of(q) or ())
        if any(t[0] >= nd - 2 for t in vals):
            self.lock_inputs(node, f"{desc} attends over the dim holding these channels (it must be a heads dim)")
            return None
        dims = {t[0] for t in vals}
        if len(dims) != 1:
            return self.unknown(node, desc)
        nq, nk = (shape_of(q) or ())[vals[0][0]], (shape_of(k) or ())[vals[1][0]]
        kv = [vals[1][1], vals[2][1]]
        if nq != nk:  # grouped-query attention: query head h uses key/value head h // (nq // nk)
            if nq % nk:
                return self.unknown(node, desc)
            kv = [tuple(Segment(s.group, s.block * (nq // nk)) for s in lay) for lay in kv]
        merged = self.merge_layouts([vals[0][1], *kv], f"{desc} joins heads laid out differently")
        return None if merged is None else (dims.pop(), merged)

    def flow_expand(self, c: _Call) -> Tracked | None:
        inp, in_shape, out_shape, desc = c.inp, c.in_shape, c.out_shape, c.desc
        if inp is None or out_shape is None:
            return None
        od = inp[0] + len(out_shape) - len(in_shape)
        if out_shape[od] != in_shape[inp[0]]:
            self.lock(inp[1], f"{desc} broadcasts a single channel")
            return None
        return od, inp[1]

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
        name = getattr(node.target, "__name__", str(node.target))
        if dim in red and name == "mean" and len(red) == 1 and len(lay) == 1:
            # a mean over the channels (RMSNorm, a LayerNorm written out) survives uniform replication
            self.g(lay[0].group).uniform.append(
                f"{desc} averages over these channels, so they can only grow by whole multiples of the width "
                f"with every unit replicated equally"
            )
            return None
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
        roots = sorted({self.find(i) for i in range(len(self.parent)) if i not in self.parts})
        new_id = {r: i for i, r in enumerate(roots)}
        groups = []
        for r in roots:
            info = self.info[r]
            locks = list(dict.fromkeys(info.locks))
            consumers = [Consumer(c.module, c.offset, int(Fraction(c.block) * self.unit[g])) for c, g in info.consumers]
            groups.append(
                ChannelGroup(
                    id=new_id[r],
                    width=info.width,
                    producers=list(dict.fromkeys(info.producers)),
                    passthrough=list(dict.fromkeys(info.passthrough)),
                    consumers=list(dict.fromkeys(consumers)),
                    locked=bool(locks),
                    reason="; ".join(locks) or None,
                    is_output=info.is_output,
                    uniform=info.uniform[0] if info.uniform else None,
                    unit=self.unit[r],
                )
            )

        def remap(layout: Layout | None) -> Layout | None:
            if layout is None:
                return None
            return tuple(Segment(new_id[self.find(s.group)], int(self.eff_block(s))) for s in self.expand(layout))

        modules = {}
        for name, u in self.uses.items():
            out = remap(u.out_layout)
            modules[name] = ModuleUse(
                name,
                u.kind,
                consumes=remap(u.consumes),
                produces=out[0].group if out else None,
                carries=remap(u.carries),
                param_dim=u.param_dim,
                out_layout=out,
                feeds_from=u.feeds_from,
            )
        sizes = [(path, size, remap(lay), attrs) for path, size, lay, attrs in self.sizes]
        return ChannelGraph(groups, modules, sizes)  # type: ignore[arg-type]


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
    analyser = _Analyser(*capture(model, example_input))
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
