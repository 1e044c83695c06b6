"""The architecture as data: a base spec plus a growth log, attached to a model.

Every netgrow op returns a new model carrying ``{"base": ..., "log": [...]}``: ``base`` says how the
original model was built (``{"family": "vgg11", "kwargs": {...}}`` for netgrow's own families, ``None``
for a user's model), and ``log`` lists the JSON-serialisable records of the ops applied since, in order.
Checkpoints store this spec as JSON and rebuild the architecture by replaying the log (see
``netgrow.train.serialization``), so every record holds all arguments needed to replay its op.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from torch import nn

_SPEC_ATTR = "_netgrow_spec"


def get_spec(model: nn.Module) -> dict[str, Any]:
    """Return a deep copy of the model's spec ``{"base": dict | None, "log": list[dict]}``."""
    spec = getattr(model, _SPEC_ATTR, None)
    if spec is None:
        return {"base": None, "log": []}
    return copy.deepcopy(spec)


def set_spec(model: nn.Module, spec: dict[str, Any]) -> None:
    """Attach ``spec`` to ``model`` (validated to be JSON-serialisable)."""
    json.dumps(spec)  # fail early: the spec must survive a checkpoint
    object.__setattr__(model, _SPEC_ATTR, copy.deepcopy(spec))


def set_base(model: nn.Module, family: str, **kwargs: Any) -> None:
    """Record that ``model`` is a fresh member of a netgrow family built with ``kwargs``."""
    set_spec(model, {"base": {"family": family, "kwargs": kwargs}, "log": []})


def growth_log(model: nn.Module) -> list[dict[str, Any]]:
    """The list of op records applied to ``model`` since its base (a copy)."""
    return get_spec(model)["log"]


def append_record(model: nn.Module, record: dict[str, Any]) -> None:
    """Append one op record (must contain ``"op"``) to the model's growth log."""
    if "op" not in record:
        raise ValueError(f"a growth record needs an 'op' key, got {sorted(record)}")
    spec = get_spec(model)
    spec["log"].append(record)
    set_spec(model, spec)
