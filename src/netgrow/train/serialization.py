"""Save and load grown models as spec + growth log + safetensors weights (no pickle anywhere).

A model file is one ``netgrow.train.safe_io`` file: the ``state_dict`` (parameters and persistent buffers)
as safetensors tensors, and the meta ``{"kind": "model", "spec": {"base": ..., "log": [...]}, "class":
"pkg.mod.Class"}``. Loading rebuilds the architecture and then loads the weights strictly:

- a netgrow family (``spec["base"]`` names it): ``netgrow.models.create(family, **kwargs)``;
- a user's model (``spec["base"] is None``): a copy of ``base``, a fresh instance of the user's class;

then replays the growth log onto it (``netgrow.ops.replay.replay_log``). Saved dtypes are kept.

Example::

    >>> import tempfile, torch
    >>> from torch import nn
    >>> import netgrow
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> path = tempfile.mkdtemp() + "/net.safetensors"
    >>> netgrow.save(net, path)
    >>> back = netgrow.load(path, base=nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    >>> torch.equal(back[0].weight, net[0].weight)
    True
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from netgrow.errors import CheckpointError, NetgrowTypeError
from netgrow.ops import param_map as _param_map
from netgrow.ops.modules import clone
from netgrow.ops.replay import replay_log
from netgrow.spec import get_spec, set_spec
from netgrow.train import safe_io

logger = logging.getLogger(__name__)

MODEL_KIND = "model"


def _class_name(model: nn.Module) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def model_to_tensors(model: nn.Module, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's ``state_dict`` (keys prefixed with ``prefix``) and its JSON meta (spec, class, prefix).

    The Trainer stores these inside its checkpoints (e.g. ``prefix="model."`` next to optimizer tensors,
    with the returned meta under ``meta["model"]``); ``netgrow.load`` reads such a checkpoint as well.
    """
    tensors = {prefix + k: v.detach() for k, v in model.state_dict().items()}
    meta = {"kind": MODEL_KIND, "spec": get_spec(model), "class": _class_name(model), "prefix": prefix}
    return tensors, meta


def save(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (atomically) as spec + growth log + safetensors weights.

    A model from ``netgrow.models.create`` loads back with ``netgrow.load(path)``; a user's own model with
    ``netgrow.load(path, base=MyModel(...))``.
    """
    if not isinstance(model, nn.Module):
        raise NetgrowTypeError(
            f"netgrow.save: model must be a torch.nn.Module, got {type(model).__name__}; pass the model itself "
            "(to store other tensors use safetensors directly)"
        )
    tensors, meta = model_to_tensors(model)
    safe_io.write_atomic(path, tensors, meta)
    n_ops = len(meta["spec"]["log"])
    logger.debug("saved %s (%d tensors, %d growth records) to %s", meta["class"], len(tensors), n_ops, path)


def _rebuild(spec: dict[str, Any], cls_name: str, base: nn.Module | None) -> nn.Module:
    base_spec = spec.get("base")
    if base is not None:
        model = clone(base)  # the caller's instance is never touched
    elif base_spec is not None:
        family, kwargs = base_spec.get("family"), base_spec.get("kwargs", {})
        try:
            from netgrow.models import create
        except ImportError:
            raise CheckpointError(
                f"the checkpoint holds a netgrow {family!r} model but netgrow.models.create is unavailable; "
                f"pass base= a fresh instance of the model"
            ) from None
        try:
            model = create(family, **kwargs)
        except Exception as exc:
            raise CheckpointError(f"cannot rebuild the netgrow model {family!r} with {kwargs}: {exc}") from exc
    else:
        raise CheckpointError(
            f"the checkpoint holds a user model of class {cls_name}, which netgrow cannot build by itself; "
            f"pass base=MyModel(...) (a fresh instance of that class, built with the same arguments) to "
            f"netgrow.load"
        )
    if spec.get("log"):
        import netgrow.models  # noqa: F401  (registers the replay of the families' "grow" records)

        try:
            model = replay_log(model, spec["log"])
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"replaying the growth log ({len(spec['log'])} ops) onto {type(model).__name__} failed: {exc}. "
                f"The checkpoint was saved from class {cls_name}; check that base is built with the same "
                f"arguments as the original model"
            ) from exc
    return model


# A recorded example input larger than this (elements), and than the model itself, is refused on load.
_MAX_INPUT_ELEMENTS = 1 << 26


def check_declared_sizes(spec: dict[str, Any], state: dict[str, torch.Tensor], base_given: bool) -> None:
    """Refuse a spec whose sizes the stored tensors cannot back, before anything is allocated.

    Rebuilding allocates what the spec declares (base kwargs, widths in the growth log, recorded input
    shapes); a damaged or forged file declaring widths of 1e8 next to 150 KB of weights would otherwise
    allocate gigabytes before the strict shape check refuses it. Every width must be at most the largest
    stored dimension, times what the later prunes of the log may have removed (a prune of ratio r shrinks a
    width by at most 1/(1-r)); a netgrow family's base is built on the ``meta`` device (no memory) and must
    not hold more elements than that allows either.
    """
    dims = [int(d) for t in state.values() for d in t.shape] or [1]
    largest, total = max(dims), sum(t.numel() for t in state.values())
    log = spec.get("log") or []
    slack = [2.0] * (len(log) + 1)  # slack[i]: how much sizes before record i may exceed the stored ones
    for i in range(len(log) - 1, -1, -1):
        ratio = log[i].get("ratio", 0.0) if log[i].get("op") == "prune" else 0.0
        ratio = min(float(ratio), 0.99) if isinstance(ratio, (int, float)) else 0.99
        slack[i] = slack[i + 1] / (1.0 - max(ratio, 0.0))
    for i, record in enumerate(log):
        sizes = dict(record.get("widths") or {}) if isinstance(record.get("widths"), dict) else {}
        if "num_classes" in record:
            sizes["num_classes"] = record["num_classes"]
        for key, size in sizes.items():
            if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= slack[i + 1] * largest:
                raise CheckpointError(
                    f"growth log entry {i} ({record.get('op')}) declares size {size!r} for {key!r}, which the stored "
                    f"tensors (largest dimension {largest}) cannot back; the file is damaged or was edited"
                )
        shape = record.get("input_shape", [1])
        n = 1
        for d in shape if isinstance(shape, list) else [-1]:
            if not isinstance(d, int) or d < 1:
                raise CheckpointError(f"growth log entry {i} has an invalid input_shape {shape!r}; the file is damaged")
            n *= d
        if n > max(64 * total, _MAX_INPUT_ELEMENTS):
            raise CheckpointError(
                f"growth log entry {i} declares an example input of shape {shape} ({n} elements) for a model of "
                f"{total} stored elements; the file is damaged or was edited"
            )
    base_spec = spec.get("base")
    if base_given or not isinstance(base_spec, dict):
        return
    from netgrow.models import create

    try:
        with torch.device("meta"):
            meta_model = create(base_spec.get("family"), **(base_spec.get("kwargs") or {}))
    except Exception as exc:
        raise CheckpointError(
            f"cannot rebuild the netgrow model {base_spec.get('family')!r} with {base_spec.get('kwargs')}: {exc}"
        ) from exc
    n_base = sum(t.numel() for t in meta_model.state_dict().values())
    if n_base > slack[0] ** 2 * total + (1 << 20):
        raise CheckpointError(
            f"the base model {base_spec.get('family')!r} {base_spec.get('kwargs')} declares {n_base} elements but "
            f"the file stores {total}; the file is damaged or was edited"
        )


def _check_keys(model: nn.Module, state: dict[str, torch.Tensor], cls_name: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    hint = f"(checkpoint saved from class {cls_name}, rebuilt model is {_class_name(model)})"
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint and model disagree on tensor names {hint}: missing from the checkpoint "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected in the checkpoint "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for k, v in own.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise CheckpointError(
                f"shape mismatch for {k!r}: checkpoint has {tuple(state[k].shape)}, the rebuilt model has "
                f"{tuple(v.shape)} {hint}; was base built with the same arguments as the saved model?"
            )


def model_from_tensors(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    base: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the model described by ``meta`` (from ``model_to_tensors``) and load ``tensors`` strictly.

    Only keys starting with ``meta["prefix"]`` are used, so the tensors of a whole training checkpoint may
    be passed. The model comes back with the saved spec attached, the saved dtypes, on ``map_location``.
    """
    if meta.get("kind") != MODEL_KIND or not isinstance(meta.get("spec"), dict):
        raise CheckpointError(
            f"not a netgrow model record (kind={meta.get('kind')!r}); expected kind 'model' with a spec"
        )
    prefix = meta.get("prefix", "")
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    cls_name = meta.get("class", "?")
    spec = meta["spec"]
    check_declared_sizes(spec, state, base is not None)
    model = _rebuild(spec, cls_name, base)
    _check_keys(model, state, cls_name)
    # Keep the saved dtypes: ``load_state_dict`` copies into existing tensors (which keeps tied weights
    # tied), so cast those tensors first. ``.data`` assignment keeps Parameter identity.
    for k, t in model.state_dict(keep_vars=True).items():
        saved = state[k]
        if t.dtype != saved.dtype and t.is_floating_point() and saved.is_floating_point():
            t.data = t.data.to(saved.dtype)
    model.load_state_dict(state, strict=True)
    model.to(map_location)
    set_spec(model, spec)
    # the replay's param map relates to the (meaningless) pre-load weights; a loaded model has none
    vars(model).pop(_param_map._MAP_ATTR, None)
    return model


def load(
    path: str | os.PathLike[str],
    base: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a model written by ``save`` (or the model inside a Trainer checkpoint).

    ``base``: required for a user's own model class -- a fresh instance built with the original arguments
    (it is copied, never modified). Optional for netgrow's families, which are rebuilt from their spec;
    if given, it is used instead of ``netgrow.models.create``. Raises ``CheckpointError`` if the file is
    missing, truncated, not a netgrow file, a pickle, or does not fit the rebuilt architecture.
    """
    tensors, meta = safe_io.read(path)
    if meta.get("kind") != MODEL_KIND:
        inner = meta.get("model")
        if not isinstance(inner, dict):
            raise CheckpointError(
                f"{os.fspath(path)!r} is a netgrow file of kind {meta.get('kind')!r} without a model in it; "
                f"pass a file written by netgrow.save or a Trainer checkpoint"
            )
        meta = inner
    try:
        return model_from_tensors(tensors, meta, base=base, map_location=map_location)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot load {os.fspath(path)!r}: {exc}") from None
