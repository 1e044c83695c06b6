"""One numeric check per registered layer rule: a tiny model whose hidden channels flow through the rule.

``CASES`` maps every target of ``netgrow.graph.rules`` (module class, function, tensor method name) to
the cases that exercise it. A ``Case`` builds ``producer -> op -> flatten -> Linear head`` around the
rule's op ("body" = which producer: Linear on (N, 4), ConvNd on (N, 2, *spatial)); ``locks`` says that
channels may not cross the op, so widen must refuse the model. ``tests/test_rules.py`` checks every
case numerically and fails for a registered rule without one.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_BODY_INPUT = {"linear": (4,), "conv1d": (2, 8), "conv2d": (2, 6, 6), "conv3d": (2, 4, 4, 4)}
_HIDDEN = 5
_BATCH = 4


def _body(kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(4, _HIDDEN)
    conv = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d}[kind]
    return conv(2, _HIDDEN, 1)


class Sandwich(nn.Module):
    """``head(flatten(op(body(x))))``; ``op`` is a module or a function of (this module, tensor)."""

    def __init__(self, op: nn.Module | Callable[..., Any], body: str):
        super().__init__()
        self.body = _body(body)
        self.mask = torch.ones(1, dtype=torch.bool)  # plain attributes some ops read (fx: constants)
        self.register_buffer("slope", torch.full((1,), 0.2))
        self.op = op
        with torch.no_grad():
            features = torch.flatten(self.apply_op(self.body(torch.zeros(2, *_BODY_INPUT[body]))), 1).shape[1]
        self.head = nn.Linear(features, 3)
        self.input_shape = (_BATCH, *_BODY_INPUT[body])

    def apply_op(self, h: torch.Tensor) -> torch.Tensor:
        return self.op(h) if isinstance(self.op, nn.Module) else self.op(self, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.apply_op(self.body(x)), 1))


@dataclass(frozen=True)
class Case:
    """``make()`` -> a fresh op (module) or a function ``(model, h) -> tensor``; the body it sits on."""

    make: Callable[[], Any]
    body: str = "linear"
    locks: bool = False
    needs_cuda: bool = False

    def build(self, dtype: torch.dtype) -> tuple[Sandwich, torch.Tensor]:
        torch.manual_seed(0)
        model = Sandwich(self.make(), self.body).to(dtype)
        with torch.no_grad():  # non-trivial norm statistics and affine parameters
            for name, t in [*model.named_buffers(), *model.named_parameters()]:
                if name.startswith("op.") and name.endswith(("running_mean", "bias")):
                    t.normal_(0, 0.5)
                elif name.startswith("op.") and name.endswith(("running_var", "weight")) and t.is_floating_point():
                    t.uniform_(0.5, 2.0)
        return model.eval(), torch.randn(model.input_shape, dtype=dtype)


def fn(op: Callable[[Any, torch.Tensor], torch.Tensor], body: str = "linear", **kw: Any) -> Case:
    return Case(lambda: op, body, **kw)


def mod(factory: Callable[[], nn.Module], body: str = "linear", **kw: Any) -> Case:
    return Case(factory, body, **kw)


def unary(f: Callable[..., torch.Tensor], body: str = "linear", *args: Any, **kw: Any) -> Case:
    return fn(lambda m, h: f(h, *args), body, **kw)


def method(name: str, *args: Any, body: str = "linear", then: str | None = None, **kw: Any) -> Case:
    """``h.name(*args)``, optionally followed by ``.to(h.dtype)`` (``then="cast"``) after a dtype change."""
    if then == "cast":
        return fn(lambda m, h: getattr(h, name)(*args).to(h.dtype), body, **kw)
    return fn(lambda m, h: getattr(h, name)(*args), body, **kw)


_pos = F.relu  # keeps sqrt & co real: sqrt(relu(h) + 1)

CASES: dict[Any, list[Case]] = {
    # producers and channel-wise layers (choosers: every variant)
    nn.Linear: [mod(lambda: nn.Linear(_HIDDEN, 6))],
    nn.Conv1d: [mod(lambda: nn.Conv1d(_HIDDEN, 6, 3, padding=1), "conv1d"),
                mod(lambda: nn.Conv1d(_HIDDEN, _HIDDEN, 3, groups=_HIDDEN), "conv1d")],
    nn.Conv2d: [mod(lambda: nn.Conv2d(_HIDDEN, 6, 3), "conv2d"),
                mod(lambda: nn.Conv2d(_HIDDEN, _HIDDEN, 3, padding=1, groups=_HIDDEN), "conv2d"),
                # a grouped conv locks its own groups; the body's group still widens around it
                mod(lambda: nn.Sequential(nn.Conv2d(_HIDDEN, 4, 1), nn.Conv2d(4, 4, 1, groups=2)), "conv2d")],
    nn.Conv3d: [mod(lambda: nn.Conv3d(_HIDDEN, 3, 3), "conv3d"),
                mod(lambda: nn.Conv3d(_HIDDEN, _HIDDEN, 3, groups=_HIDDEN), "conv3d")],
    nn.PReLU: [mod(lambda: nn.PReLU()), mod(lambda: nn.PReLU(_HIDDEN), "conv2d")],
    nn.modules.batchnorm._BatchNorm: [mod(lambda: nn.BatchNorm1d(_HIDDEN)), mod(lambda: nn.BatchNorm2d(_HIDDEN), "conv2d"),
                                      mod(lambda: nn.BatchNorm3d(_HIDDEN), "conv3d")],
    nn.modules.instancenorm._InstanceNorm: [mod(lambda: nn.InstanceNorm1d(_HIDDEN, affine=True), "conv1d"),
                                            mod(lambda: nn.InstanceNorm2d(_HIDDEN, affine=True), "conv2d")],
    nn.GroupNorm: [mod(lambda: nn.GroupNorm(1, _HIDDEN), "conv2d"), mod(lambda: nn.GroupNorm(_HIDDEN, _HIDDEN), "conv1d")],
    nn.LayerNorm: [mod(lambda: nn.LayerNorm(_HIDDEN)), mod(lambda: nn.LayerNorm(_HIDDEN, elementwise_affine=False))],
    nn.RMSNorm: [mod(lambda: nn.RMSNorm(_HIDDEN)), mod(lambda: nn.RMSNorm([_HIDDEN, 8]), "conv1d")],
    # element-wise modules
    **{cls: [mod(cls)] for cls in (
        nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish,
        nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink,
        nn.Identity, nn.Dropout, nn.AlphaDropout, nn.FeatureAlphaDropout)},
    nn.Hardtanh: [mod(nn.Hardtanh), mod(nn.ReLU6)],
    nn.Threshold: [mod(lambda: nn.Threshold(0.1, 20.0))],
    nn.Dropout1d: [mod(nn.Dropout1d, "conv1d")],
    nn.Dropout2d: [mod(nn.Dropout2d, "conv2d")],
    nn.Dropout3d: [mod(nn.Dropout3d, "conv3d")],
    # spatial modules
    **{cls: [mod(lambda cls=cls: cls(2), body)] for cls, body in {
        nn.MaxPool1d: "conv1d", nn.MaxPool2d: "conv2d", nn.MaxPool3d: "conv3d", nn.AvgPool1d: "conv1d",
        nn.AvgPool2d: "conv2d", nn.AvgPool3d: "conv3d", nn.AdaptiveAvgPool1d: "conv1d", nn.AdaptiveAvgPool2d: "conv2d",
        nn.AdaptiveAvgPool3d: "conv3d", nn.AdaptiveMaxPool1d: "conv1d", nn.AdaptiveMaxPool2d: "conv2d",
        nn.AdaptiveMaxPool3d: "conv3d", nn.ZeroPad1d: "conv1d", nn.ZeroPad2d: "conv2d", nn.ZeroPad3d: "conv3d",
        nn.ReflectionPad1d: "conv1d", nn.ReflectionPad2d: "conv2d", nn.ReflectionPad3d: "conv3d",
        nn.ReplicationPad1d: "conv1d", nn.ReplicationPad2d: "conv2d", nn.ReplicationPad3d: "conv3d"}.items()},
    **{cls: [mod(lambda cls=cls: cls(1, 0.5), body)] for cls, body in {
        nn.ConstantPad1d: "conv1d", nn.ConstantPad2d: "conv2d", nn.ConstantPad3d: "conv3d"}.items()},
    nn.LPPool1d: [mod(lambda: nn.LPPool1d(2, 2), "conv1d")],
    nn.LPPool2d: [mod(lambda: nn.LPPool2d(2, 2), "conv2d")],
    nn.Upsample: [mod(lambda: nn.Upsample(scale_factor=2), "conv2d")],
    nn.UpsamplingNearest2d: [mod(lambda: nn.UpsamplingNearest2d(scale_factor=2), "conv2d")],
    nn.UpsamplingBilinear2d: [mod(lambda: nn.UpsamplingBilinear2d(scale_factor=2), "conv2d")],
    # softmax & co along a dim that does not hold the channels; flatten
    **{cls: [mod(lambda cls=cls: cls(dim=-1), "conv1d")] for cls in (nn.Softmax, nn.LogSoftmax, nn.Softmin)},
    nn.Flatten: [mod(nn.Flatten, "conv2d")],
    # element-wise functions
    **{f: [unary(f)] for f in (
        F.relu, torch.relu, F.relu6, F.hardtanh, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.leaky_relu,
        F.hardswish, F.hardsigmoid, F.softplus, F.softsign, F.logsigmoid, F.tanhshrink,
        torch.sigmoid, torch.tanh, torch.selu, torch.celu, torch.exp, torch.abs, torch.neg, torch.square,
        F.hardshrink, operator.neg, operator.pos, F.alpha_dropout)},
    F.dropout: [unary(F.dropout, "linear", 0.5, False)],
    F.relu_: [fn(lambda m, h: F.relu_(h.clone()))],
    torch.relu_: [fn(lambda m, h: torch.relu_(h.clone()))],
    F.hardtanh_: [fn(lambda m, h: F.hardtanh_(h.clone()))],
    F.threshold: [unary(F.threshold, "linear", 0.1, 20.0)],
    torch.sqrt: [fn(lambda m, h: torch.sqrt(_pos(h) + 1))],
    torch.clamp: [unary(torch.clamp, "linear", -0.5, 0.5)],
    torch.clip: [unary(torch.clip, "linear", -0.5, 0.5)],
    F.dropout1d: [unary(F.dropout1d, "conv1d", 0.5, False)],
    F.dropout2d: [unary(F.dropout2d, "conv2d", 0.5, False)],
    F.dropout3d: [unary(F.dropout3d, "conv3d", 0.5, False)],
    # functions netgrow cannot follow channels through
    **{f: [fn(op, locks=True)] for f, op in {
        F.leaky_relu_: lambda m, h: F.leaky_relu_(h.clone()),
        F.elu_: lambda m, h: F.elu_(h.clone()),
        F.prelu: lambda m, h: F.prelu(h, m.slope),
        torch.prelu: lambda m, h: torch.prelu(h, m.slope),
        F.rrelu: lambda m, h: F.rrelu(h),
        torch.rrelu: lambda m, h: torch.rrelu(h),
        F.glu: lambda m, h: F.glu(torch.cat([h, h], 1), 1)}.items()},
    # binary element-wise functions: both operands carry the channels
    **{f: [fn(lambda m, h, f=f: f(h, h * 0.5))] for f in (
        operator.add, operator.sub, operator.mul, torch.add, torch.sub,
        torch.subtract, torch.mul, torch.multiply, torch.maximum, torch.minimum)},
    **{f: [fn(lambda m, h, f=f: f(h, 2.0))] for f in (operator.truediv, torch.div, torch.true_divide)},
    operator.pow: [fn(lambda m, h: operator.pow(h, 2))],
    torch.pow: [fn(lambda m, h: torch.pow(h, 2))],
    torch.where: [fn(lambda m, h: torch.where(m.mask, h, -h))],
    # spatial functions
    **{f: [unary(f, body, 2)] for f, body in {
        F.max_pool1d: "conv1d", F.max_pool2d: "conv2d", F.max_pool3d: "conv3d", F.avg_pool1d: "conv1d",
        F.avg_pool2d: "conv2d", F.avg_pool3d: "conv3d", F.adaptive_avg_pool1d: "conv1d",
        F.adaptive_avg_pool2d: "conv2d", F.adaptive_avg_pool3d: "conv3d", F.adaptive_max_pool1d: "conv1d",
        F.adaptive_max_pool2d: "conv2d", F.adaptive_max_pool3d: "conv3d"}.items()},
    F.interpolate: [fn(lambda m, h: F.interpolate(h, scale_factor=2), "conv2d")],
    F.pad: [fn(lambda m, h: F.pad(h, (1, 1, 2, 0)), "conv2d")],
    **{f: [fn(lambda m, h, f=f: f(h, dim=-1), "conv1d")] for f in (
        F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax)},
    # shape functions
    **{f: [fn(lambda m, h, f=f: f([h, h * 2], 1), "conv1d")] for f in (torch.cat, torch.concat, torch.concatenate)},
    torch.flatten: [fn(lambda m, h: torch.flatten(h, 1), "conv2d")],
    torch.reshape: [fn(lambda m, h: torch.reshape(h, (h.shape[0], -1)), "conv2d")],
    **{f: [fn(lambda m, h, f=f: f(h, (2, 3)), "conv2d")] for f in (torch.mean, torch.sum, torch.amax, torch.amin,
                                                                   torch.std, torch.var)},
    operator.getitem: [fn(lambda m, h: h[:, :, 0], "conv1d")],
    torch.permute: [fn(lambda m, h: torch.permute(torch.permute(h, (0, 2, 1)), (0, 2, 1)), "conv1d")],
    torch.transpose: [fn(lambda m, h: torch.transpose(torch.transpose(h, 1, 2), 1, 2), "conv1d")],
    torch.t: [fn(lambda m, h: torch.t(torch.t(h)))],
    torch.unsqueeze: [fn(lambda m, h: torch.unsqueeze(h, -1))],
    torch.squeeze: [fn(lambda m, h: torch.squeeze(h[:, :, :1], -1), "conv1d")],
    getattr: [fn(lambda m, h: h.view(h.shape[0], -1), "conv2d")],
    # tensor methods
    **{name: [method(name)] for name in ("relu", "sigmoid", "tanh", "exp", "abs", "neg", "square", "clone", "detach",
                                         "contiguous", "cpu", "requires_grad_")},
    **{name: [fn(lambda m, h, name=name: getattr(h.clone(), name)())] for name in ("relu_", "sigmoid_", "tanh_")},
    "sqrt": [fn(lambda m, h: (_pos(h) + 1).sqrt())],
    "clamp": [method("clamp", -0.5, 0.5)],
    "clamp_": [fn(lambda m, h: h.clone().clamp_(-0.5, 0.5))],
    "clip": [method("clip", -0.5, 0.5)],
    **{name: [method(name, then="cast")] for name in ("float", "double", "half", "bfloat16")},
    "type": [fn(lambda m, h: h.type(torch.float64).to(h.dtype))],
    "cuda": [method("cuda", then="cast", needs_cuda=True)],
    "to": [fn(lambda m, h: h.to(h.dtype))],
    "type_as": [fn(lambda m, h: h.type_as(m.slope))],
    **{name: [fn(lambda m, h, name=name: getattr(h, name)(h * 0.5))] for name in ("add", "sub", "mul", "maximum",
                                                                                  "minimum")},
    **{name: [fn(lambda m, h, name=name: getattr(h.clone(), name)(h * 0.5))] for name in ("add_", "sub_", "mul_")},
    "div": [fn(lambda m, h: h.div(2.0))],
    "div_": [fn(lambda m, h: h.clone().div_(2.0))],
    "pow": [fn(lambda m, h: h.pow(2))],
    "where": [fn(lambda m, h: h.where(m.mask, -h))],
    **{name: [fn(lambda m, h, name=name: getattr(h, name)(-1), "conv1d")] for name in (
        "mean", "sum", "amax", "amin", "std", "var", "logsumexp", "prod")},
    **{name: [fn(lambda m, h, name=name: getattr(h, name)(-1), "conv1d")] for name in ("softmax", "log_softmax")},
    "flatten": [fn(lambda m, h: h.flatten(1), "conv2d")],
    "view": [fn(lambda m, h: h.view(h.size(0), -1), "conv2d")],
    "reshape": [fn(lambda m, h: h.reshape(h.size(0), -1), "conv2d")],
    "permute": [fn(lambda m, h: h.permute(0, 2, 1).permute(0, 2, 1), "conv1d")],
    "transpose": [fn(lambda m, h: h.transpose(1, 2).transpose(1, 2), "conv1d")],
    "swapaxes": [fn(lambda m, h: h.swapaxes(1, 2).swapaxes(1, 2), "conv1d")],
    "t": [fn(lambda m, h: h.t().t())],
    "unsqueeze": [fn(lambda m, h: h.unsqueeze(-1))],
    "squeeze": [fn(lambda m, h: h[:, :, :1].squeeze(-1), "conv1d")],
    "size": [fn(lambda m, h: h.view(h.size(0), -1), "conv2d")],
    "dim": [fn(lambda m, h: h * (h.dim() - 3), "conv2d")],
    "ndimension": [fn(lambda m, h: h * (h.ndimension() - 3), "conv2d")],
    "numel": [fn(lambda m, h: h.view(h.size(0), h.numel() // h.size(0)), "conv2d")],
    "nelement": [fn(lambda m, h: h.view(h.size(0), h.nelement() // h.size(0)), "conv2d")],
    # transformers: embeddings, split/chunk (the mirror of cat), contractions of activations, attention
    nn.Embedding: [mod(lambda: EmbeddingAdd())],
    nn.MultiheadAttention: [mod(lambda: SelfAttention(), "conv1d"), mod(lambda: SelfAttention(5), "conv1d")],
    torch.split: [fn(lambda m, h: torch.split(h, 2, 0)[0]),
                  fn(lambda m, h: torch.cat(torch.split(h, [2, 3], 1)[::-1], 1), locks=True)],
    "split": [fn(lambda m, h: h.split(3, 2)[0], "conv2d"),
              fn(lambda m, h: swap(h.split(h.size(1) // 2, 1), 3), "conv1d", locks=True)],
    torch.chunk: [fn(lambda m, h: swap(torch.chunk(h, _HIDDEN, 1)))],
    "chunk": [fn(lambda m, h: swap(h.chunk(_HIDDEN, 1)), "conv2d")],
    torch.matmul: [fn(lambda m, h: torch.matmul(h, h), "conv2d"),
                   fn(lambda m, h: torch.matmul(h.unsqueeze(1), h.unsqueeze(2)), locks=True)],
    operator.matmul: [fn(lambda m, h: (h @ h.transpose(2, 3)) @ h, "conv2d")],
    "matmul": [fn(lambda m, h: h.matmul(h), "conv2d")],
    F.scaled_dot_product_attention: [fn(lambda m, h: F.scaled_dot_product_attention(h, h, h), "conv2d")],
    "expand": [fn(lambda m, h: h.unsqueeze(-1).expand(-1, -1, 3))],
    torch.rsqrt: [fn(lambda m, h: torch.rsqrt(_pos(h) + 1))],
    "rsqrt": [fn(lambda m, h: (_pos(h) + 1).rsqrt())],
    torch.masked_fill: [fn(lambda m, h: torch.masked_fill(h, m.slope > 0.5, 0.0))],
    "masked_fill": [fn(lambda m, h: h.masked_fill(m.slope > 0.5, 0.0))],
}  # fmt: skip


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` over the positions of a (N, C, L) map, channels last inside."""

    def __init__(self, heads: int = 1):
        super().__init__()
        self.mha = nn.MultiheadAttention(_HIDDEN, heads, batch_first=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = h.transpose(1, 2)
        return self.mha(y, y, y, need_weights=False)[0].transpose(1, 2)


class EmbeddingAdd(nn.Module):
    """Adds a looked-up embedding to the channels: the embedding becomes a producer of their group."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, _HIDDEN)
        self.register_buffer("idx", torch.tensor([3]))  # one row, broadcast over the batch

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.emb(self.idx)


def swap(pieces: Any, n: int = _HIDDEN) -> torch.Tensor:
    """The ``n`` pieces of a split along the channels, concatenated back in another order."""
    return torch.cat([pieces[n - 1], *[pieces[i] for i in range(n - 1)]], 1)
