"""Small helpers for reading and replacing submodules by their ``named_modules()`` path."""

from __future__ import annotations

import copy

from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.ops.param_map import note_origin


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path``; a clear error listing close names when there is none."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = [n for n in names if path.split(".")[-1] in n][:8] or names[:8]
        raise NetgrowValueError(
            f"model {type(model).__name__} has no module named {path!r}; "
            f"use a name from model.named_modules(), e.g. {close}"
        ) from None


def set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at ``path`` with ``new`` (``path`` must exist)."""
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def clone(model: nn.Module) -> nn.Module:
    """A deep copy that keeps the user's class, methods and attributes; the original is never touched.

    The copy remembers ``model`` as its origin (``netgrow.ops.param_map.note_origin``) so the op's
    parameter map extends the lineage ``netgrow.carry_optimizer`` follows."""
    new = copy.deepcopy(model)
    note_origin(new, model)
    return new
