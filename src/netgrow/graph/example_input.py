"""The one check of an example input against a model, shared by every public function that takes one.

``widen``, ``deepen``, ``prune``, ``expand_classes``, ``channel_groups`` and ``count_macs`` all run the
model on a user's example batch. A wrong batch (another image size, float64 for a float32 model, a
tensor on another device or on ``meta``, NaN values) would otherwise surface as PyTorch's message from
deep inside the op (``mat1 and mat2 shapes cannot be multiplied``), or -- for NaN -- as a
``VerificationError`` blaming netgrow. Here it is refused first, with netgrow's typed errors naming the
argument, before anything is copied or changed.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 2))
    >>> check_example_input(net, torch.randn(3, 5), "widen")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    netgrow.errors.NetgrowValueError: widen: the model cannot run on example_input of shape (3, 5) ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.graph.trace import eval_mode


def _args(example_input: Any) -> tuple[Any, ...] | None:
    """The forward's positional arguments (the first one a tensor), or None."""
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and example_input and isinstance(example_input[0], torch.Tensor):
        return tuple(example_input)
    return None


def check_example_input(
    model: Any, example_input: Any, op: str, arg: str = "example_input", allow_tuple: bool = False
) -> None:
    """Raise ``NetgrowTypeError``/``NetgrowValueError`` naming ``arg`` unless ``model`` can run on it.

    Checks, in order: ``model`` is a module; ``example_input`` a tensor (or, with ``allow_tuple``, a tuple
    of the forward's positional tensors) with a batch dimension of at least one sample; on the model's
    device and not on ``meta``; floating inputs of the model's floating dtype; finite; and finally one
    forward pass in eval mode under ``no_grad`` (training flags and the RNG state restored), whose failure
    is reported with the input's shape. The model is never changed.
    """
    if not isinstance(model, nn.Module):
        raise NetgrowTypeError(f"{op}: expected a torch.nn.Module, got {type(model).__name__}; pass the model itself")
    args = _args(example_input)
    if args is None or (not allow_tuple and not isinstance(example_input, torch.Tensor)):
        kind = "a torch.Tensor batch" + (" (or a tuple of the forward's tensors)" if allow_tuple else "")
        raise NetgrowTypeError(f"{op}: {arg} must be {kind} the model accepts, got {type(example_input).__name__}")
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    first = tensors[0]
    if first.dim() == 0 or first.shape[0] < 1:
        raise NetgrowValueError(
            f"{op}: {arg} needs a batch dimension with at least one sample, got shape {tuple(first.shape)}; "
            "pass e.g. x.unsqueeze(0) for a single sample"
        )
    state = [*model.parameters(), *model.buffers()]
    model_device = state[0].device if state else None
    float_dtypes = sorted({str(t.dtype) for t in model.parameters() if t.is_floating_point()})
    for t in tensors:
        if t.device.type == "meta" and (model_device is None or model_device.type != "meta"):
            raise NetgrowValueError(
                f"{op}: {arg} is on the 'meta' device (a shape without values); netgrow runs the model on it, "
                f"so pass real values, e.g. torch.randn{tuple(t.shape)}"
            )
        if model_device is not None and t.device != model_device:
            raise NetgrowValueError(
                f"{op}: {arg} is on {t.device} but the model is on {model_device}; pass {arg}.to('{model_device}')"
            )
        if t.is_floating_point() and float_dtypes and str(t.dtype) not in float_dtypes:
            want = float_dtypes[0].removeprefix("torch.")
            raise NetgrowTypeError(
                f"{op}: {arg} has dtype {str(t.dtype).removeprefix('torch.')} but the model's parameters are "
                f"{', '.join(d.removeprefix('torch.') for d in float_dtypes)}; pass {arg}.to(torch.{want})"
            )
        if (t.is_floating_point() or t.is_complex()) and t.device.type != "meta":
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise NetgrowValueError(
                    f"{op}: {arg} holds {bad} NaN/inf value(s) of {t.numel()}; the function-preservation check "
                    "needs finite inputs: pass a real batch or torch.randn of that shape"
                )
    _try_forward(model, args, op, arg)


def _try_forward(model: nn.Module, args: tuple[Any, ...], op: str, arg: str) -> None:
    try:
        with eval_mode(model), torch.random.fork_rng(devices=[]), torch.no_grad():
            model(*args)
    except Exception as exc:  # PyTorch raises RuntimeError, ValueError, IndexError, ... for a wrong shape
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        dtypes = ", ".join(str(t.dtype).removeprefix("torch.") for t in tensors)
        raise NetgrowValueError(
            f"{op}: the model cannot run on {arg} of shape {shapes} ({dtypes}): {type(exc).__name__}: {exc}. "
            "Pass a batch shaped like the model's training data"
        ) from exc
