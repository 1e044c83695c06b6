"""The model registry: thin typed entry points per family member, ``create`` and spec queries.

Every entry point has the signature ``(num_classes, width, in_channels, input_size) -> nn.Module`` and is
registered with ``@register_model`` under its function name (timm style). ``create`` validates the
arguments, builds the model and records its base spec (``netgrow.spec.set_base``) so checkpoints can
rebuild it.

``input_size`` is an int (a square image for the 2-D families and the MLP, a sequence length for
``cnn1d``) or a list of spatial sizes (``[40]`` = a length-40 sequence, ``[28, 28]`` = a 28x28 image).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.graph.output import output_layer as graph_output_layer
from netgrow.graph.output import register_output_resolver
from netgrow.spec import get_spec, set_base

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# families built from a typed config dataclass (``create("gpt", n_layer=4, ...)``) instead of
# (num_classes, width, in_channels, input_size): name -> config class
_CONFIG_FAMILIES: dict[str, type] = {}
_OUTPUT_LAYER = "classifier"  # every classifier family names its final layer this way
# the GPT's output head is its (tied) token embedding
_OUTPUT_LAYERS = {"gpt": "wte"}

F = TypeVar("F", bound=Callable[..., nn.Module])
InputSize = int | Sequence[int]  # an int, or one size per spatial dim


def register_model(fn: F) -> F:
    """Register a model entry point under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def register_config_model(config_cls: type) -> Callable[[F], F]:
    """Register an entry point ``fn(**config_fields) -> nn.Module`` whose keywords are ``config_cls``'s fields."""

    def deco(fn: F) -> F:
        _REGISTRY[fn.__name__] = fn
        _CONFIG_FAMILIES[fn.__name__] = config_cls
        return fn

    return deco


def list_models() -> list[str]:
    """Names accepted by ``create``, sorted by family then depth.

        >>> "vgg11" in list_models() and "resnet20" in list_models()
        True
    """
    import netgrow.models  # noqa: F401  (importing the package registers every family)

    def key(name: str) -> tuple[str, int]:
        stem = name.rstrip("0123456789")
        return stem, int(name[len(stem) :] or 0)

    return sorted(_REGISTRY, key=key)


def spatial_sizes(input_size: int | Sequence[int], dims: int) -> list[int]:
    """``input_size`` as a list of ``dims`` spatial sizes (an int is repeated)."""
    sizes = [int(input_size)] * dims if isinstance(input_size, int) else [int(s) for s in input_size]
    if len(sizes) != dims or any(s < 1 for s in sizes):
        raise NetgrowValueError(
            f"input_size={input_size!r} does not describe a {dims}-D input; pass an int >= 1 or a list of {dims} sizes"
        )
    return sizes


def create(
    name: str,
    num_classes: int = 10,
    width: float = 1.0,
    in_channels: int = 3,
    input_size: int | Sequence[int] = 32,
    **config: Any,
) -> nn.Module:
    """Build a fresh model of the registered family member ``name`` and record its base spec.

    Config families (``"gpt"``) take their config dataclass's fields as keywords instead
    (``create("gpt", vocab_size=96, n_layer=4, n_embd=128, n_head=4)``; see ``netgrow.models.gpt``).

        >>> import torch
        >>> create("vgg11", num_classes=5, width=0.25)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 5])
        >>> create("mlp", in_channels=1, input_size=[40])(torch.zeros(2, 1, 40)).shape
        torch.Size([2, 10])
    """
    names = list_models()
    if name not in _REGISTRY:
        raise NetgrowValueError(f"unknown model {name!r}; netgrow.models.create accepts one of {names}")
    if name in _CONFIG_FAMILIES:
        return _create_from_config(name, num_classes, width, in_channels, input_size, config)
    if config:
        raise NetgrowValueError(
            f"create({name!r}) got unexpected keyword(s) {sorted(config)}; it takes num_classes, width, "
            "in_channels and input_size"
        )
    for key, value in {"num_classes": num_classes, "width": width, "in_channels": in_channels}.items():
        if not value > 0:
            raise NetgrowValueError(f"create({name!r}): {key}={value!r} is invalid; it must be positive")
    if not isinstance(input_size, int):
        input_size = [int(s) for s in input_size]
    model = _REGISTRY[name](num_classes=num_classes, width=width, in_channels=in_channels, input_size=input_size)
    set_base(model, name, num_classes=num_classes, width=width, in_channels=in_channels, input_size=input_size)
    log.debug("created %s (%d parameters)", name, sum(p.numel() for p in model.parameters()))
    return model


def _create_from_config(
    name: str, num_classes: int, width: float, in_channels: int, input_size: Any, config: dict[str, Any]
) -> nn.Module:
    classic = {"num_classes": (num_classes, 10), "width": (width, 1.0), "in_channels": (in_channels, 3),
               "input_size": (input_size, 32)}  # fmt: skip
    given = [k for k, (v, default) in classic.items() if v != default]
    fields = [f.name for f in dataclasses.fields(_CONFIG_FAMILIES[name])]
    if given:
        raise NetgrowValueError(
            f"create({name!r}) is configured by {_CONFIG_FAMILIES[name].__name__} fields {fields}, not {given}; "
            f"e.g. create({name!r}, vocab_size=...) instead of num_classes"
        )
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise NetgrowValueError(f"create({name!r}): unknown keyword(s) {unknown}; use fields of {fields}")
    cfg = _CONFIG_FAMILIES[name](**config)
    model = _REGISTRY[name](**dataclasses.asdict(cfg))
    set_base(model, name, **dataclasses.asdict(cfg))
    log.debug("created %s (%d parameters)", name, sum(p.numel() for p in model.parameters()))
    return model


def architecture(model: nn.Module) -> str:
    """The family member a netgrow model's structure currently is (its base, or the last ``grow`` target).

    Ops that keep the family's layout (widen, prune, expand_classes) do not change the name; ``deepen``
    inserts blocks no family member has, so a deepened model still reports the member it was deepened from.

        >>> architecture(create("vgg11", width=0.25))
        'vgg11'
    """
    spec = get_spec(model)
    if spec["base"] is None:
        raise NetgrowValueError(
            f"{type(model).__name__} is not a netgrow model (no base spec); build it with netgrow.models.create"
        )
    arch = spec["base"]["family"]
    for record in spec["log"]:
        if record.get("op") == "grow":
            arch = record["target"]
    return arch


def output_layer(model: nn.Module) -> str:
    """The ``named_modules()`` name of the final classifier layer.

    netgrow's classifier families all call it ``"classifier"``; the GPT's head is its tied token embedding
    ``"wte"``; for any other model the layer is found by tracing (``netgrow.graph.output.find_output_layer``).
    """
    return graph_output_layer(model)


def _family_output_layer(model: nn.Module) -> str | None:
    base = get_spec(model)["base"]
    return None if base is None else _OUTPUT_LAYERS.get(base["family"], _OUTPUT_LAYER)


# the growth ops (a layer below) ask netgrow.graph for the output layer; tell it about the families
register_output_resolver(_family_output_layer)
