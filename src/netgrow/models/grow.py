"""Exact growth paths inside a family: VGG11 -> 13 -> 16 -> 19, ResNet-20 -> 32 -> 44 -> 56 -> 110, and any
bigger GPT config (depth, d_model, heads, FFN; ``netgrow.models.gpt_grow``).

The result has exactly the module structure, state_dict keys and shapes of a fresh ``create(target)`` with
the model's own channel counts, and computes the same function:

- VGG: each stage gets the target's extra convs as identity Conv-BN-ReLU triples
  (``netgrow.ops.deepen.identity_block``) right after its last ReLU, before its max-pool. That point is
  post-ReLU, so Net2DeeperNet is exact; with ``data`` the new BNs take the point's channel statistics.
  Within a stage every conv after the first maps C -> C channels, so the new triples have the target's
  shapes wherever the target places its extra convs; later ``features`` indices shift
  (e.g. vgg11 -> vgg19: ``features.7.weight`` -> ``features.10.weight``).
- ResNet: each stage gets zero-init basic blocks (``netgrow.ops.deepen.zero_init_residual_block``)
  appended at its end: exact in eval and train mode.

    >>> import torch
    >>> from netgrow.models import create
    >>> x = torch.randn(2, 3, 32, 32)
    >>> small = create("resnet20", width=0.5).eval()
    >>> big = grow(small, "resnet32", example_input=x)
    >>> len(big.layer1), torch.allclose(big.eval()(x), small(x))
    (5, True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.graph.example_input import check_example_input
from netgrow.models.gpt import GPTConfig
from netgrow.models.gpt_grow import grow_gpt
from netgrow.models.registry import architecture, list_models
from netgrow.models.resnet import DEPTHS, blocks_per_stage
from netgrow.models.vgg import STAGES, stage_layout
from netgrow.ops.deepen import collect_channel_stats, identity_block, zero_init_residual_block
from netgrow.ops.modules import clone
from netgrow.ops.param_map import ParamSource, set_param_map
from netgrow.ops.replay import example_input as record_input
from netgrow.ops.replay import register_replay
from netgrow.ops.verify import verify_preserved
from netgrow.spec import append_record, growth_log

log = logging.getLogger(__name__)
register_replay("grow", __name__)  # so netgrow.load can rebuild a grown family member

PATHS = {"vgg": list(STAGES), "resnet": [f"resnet{d}" for d in DEPTHS]}


def _family(name: str) -> str:
    return name.rstrip("0123456789")


def _check(model: nn.Module, target: str) -> str:
    current = architecture(model)
    family = _family(current)
    if family not in PATHS:
        raise NetgrowValueError(
            f"grow: {current!r} has no growth path; grow supports {PATHS['vgg']} and {PATHS['resnet']}"
        )
    order = PATHS[family]
    if target not in order or order.index(target) <= order.index(current):
        deeper = order[order.index(current) + 1 :]
        raise NetgrowValueError(
            f"grow: cannot grow a {current} into {target!r}; pick a deeper member of its family: "
            f"{deeper or 'none, it is the deepest'}"
            + ("" if target in list_models() else f" (known models: {list_models()})")
        )
    since = growth_log(model)
    if any(r.get("op") == "deepen" for r in since):
        raise NetgrowValueError(
            f"grow: this {current} was deepened (a 'deepen' record in its growth log), so its structure is no "
            "longer a family member's; grow the plain model first and deepen afterwards"
        )
    return current


def _tensor_names(module: nn.Module) -> list[str]:
    return [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]


def _grow_vgg(model: nn.Module, target: str, data: Iterable[Any] | None) -> dict[str, str | None]:
    """Insert identity triples into ``model.features`` in place; returns {new tensor name: old name or None}."""

    features: nn.Sequential = model.features  # type: ignore[assignment]
    stages = stage_layout(features)
    extra = {stage[-1] + 2: len(want) - len(stage) for stage, want in zip(stages, STAGES[target])}  # last ReLU -> count
    extra = {i: k for i, k in extra.items() if k > 0}
    stats = collect_channel_stats(model, [f"features.{i}" for i in extra], data) if data is not None else {}
    old = list(features)
    new: list[nn.Module] = []
    moved: dict[int, int] = {}
    for i, mod in enumerate(old):
        moved[i] = len(new)
        new.append(mod)
        for _ in range(extra.get(i, 0)):
            conv, bn = old[i - 2], old[i - 1]
            block = identity_block(
                conv.out_channels, 2, act=nn.ReLU(), bn=True, stats=stats.get(f"features.{i}"), kernel_size=3,
                bias=conv.bias is not None, eps=bn.eps, momentum=bn.momentum,
                device=conv.weight.device, dtype=conv.weight.dtype,
            )  # fmt: skip
            block.train(features.training)
            new.extend(block)
    model.features = nn.Sequential(*new)
    model.features.training = features.training  # the old modules keep their own flags
    sources: dict[str, str | None] = {f"features.{n}": None for n in _tensor_names(model.features)}
    for name in _tensor_names(features):
        idx, rest = name.split(".", 1)
        sources[f"features.{moved[int(idx)]}.{rest}"] = f"features.{name}"
    return sources


def _grow_resnet(model: nn.Module, target: str) -> dict[str, str | None]:
    """Append zero-init basic blocks to every stage of ``model`` in place; returns {new tensor name: None}."""

    fresh: dict[str, str | None] = {}
    want = blocks_per_stage(int(target.removeprefix("resnet")))
    for stage_name in ("layer1", "layer2", "layer3"):
        stage: nn.Sequential = getattr(model, stage_name)
        last = stage[-1]
        ref = last.conv2.weight
        blocks = [
            zero_init_residual_block(
                last.conv2.out_channels, 2, act=nn.ReLU(), bn=True, eps=last.bn2.eps, momentum=last.bn2.momentum,
                device=ref.device, dtype=ref.dtype,
            ).train(stage.training)
            for _ in range(want - len(stage))
        ]  # fmt: skip
        for j, block in enumerate(blocks, start=len(stage)):
            fresh.update({f"{stage_name}.{j}.{n}": None for n in _tensor_names(block)})
        grown = nn.Sequential(*stage, *blocks)
        grown.training = stage.training
        setattr(model, stage_name, grown)
    return fresh


def grow(
    model: nn.Module,
    target: str | Mapping[str, Any] | GPTConfig,
    example_input: torch.Tensor,
    data: Iterable[Any] | None = None,
    verify: bool = True,
    **gpt_options: Any,
) -> nn.Module:
    """A copy of netgrow model ``model`` grown into family member ``target`` (same function).

    ``data`` (VGG only): input batches for the new BatchNorms' statistics (see ``netgrow.ops.deepen``).
    ``verify``: check the function is unchanged on ``example_input`` (eval mode).
    A GPT's ``target`` is a ``GPTConfig`` or the fields that grow, and ``gpt_options`` are
    ``depth="copy"|"stack"``, ``noise``, ``seed`` (``netgrow.models.gpt_grow``).
    """
    check_example_input(model, example_input, "grow")
    if _family(architecture(model)) == "gpt":
        if data is not None:
            raise NetgrowValueError("grow: data= is for VGG BatchNorm statistics; a GPT has no BatchNorm")
        return grow_gpt(model, target, example_input, verify=verify, **gpt_options)  # type: ignore[arg-type]
    if gpt_options:
        raise NetgrowValueError(f"grow: options {sorted(gpt_options)} apply to GPT models only")
    if not isinstance(target, str):
        raise NetgrowValueError(f"grow: target must be a family member name like 'vgg19', got {target!r}")
    current = _check(model, target)
    new = clone(model)
    sources = _grow_vgg(new, target, data) if _family(current) == "vgg" else _grow_resnet(new, target)
    set_param_map(new, {name: ParamSource(sources.get(name, name)) for name in _tensor_names(new)})
    append_record(
        new,
        {
            "op": "grow",
            "target": target,
            "input_shape": list(example_input.shape),
            "input_dtype": str(example_input.dtype).removeprefix("torch."),
        },
    )
    if verify:
        verify_preserved(model, new, example_input, f"grow {current} -> {target}")
    log.info("grow: %s -> %s", current, target)
    return new


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture change of a ``grow`` record (weights are loaded afterwards)."""
    device = next(model.parameters()).device
    if record["target"] == "gpt":
        x = record_input(record).to(device)
        return grow_gpt(model, record["config"], x, depth=record["depth"], noise=0.0, seed=0, verify=False)
    return grow(model, record["target"], record_input(record).to(device), verify=False)
