"""Self-checks of function-preserving ops: run old and new model on the same input, compare.

On failure the error names the first module (in the new model's execution order) whose output differs
from the same-named module of the old model. Outputs that a widen made wider are compared on their first
n units, which Net2WiderNet keeps in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netgrow.errors import VerificationError
from netgrow.graph.trace import eval_mode

__all__ = ["eval_mode", "max_abs_diff", "tolerance", "verify_preserved"]


def tolerance(reference: torch.Tensor, rel: float | None = None) -> float:
    """Allowed max |f_new - f_old|: ``rel * (1 + max|f_old|)``; rel = 1e-5 (float32), 1e-10 (float64)."""
    if rel is None:
        rel = 1e-10 if reference.dtype == torch.float64 else 1e-5
    return rel * (1.0 + float(reference.detach().abs().max()))


def first_output(out: Any) -> torch.Tensor | None:
    """The tensor a model's output leads with (a tensor, a tuple's first, a Hugging Face output's logits)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):  # Hugging Face ModelOutput: logits / last hidden state first
        out = tuple(v for v in out.values() if v is not None)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _record_outputs(model: nn.Module, x: Any) -> tuple[Any, list[tuple[str, torch.Tensor]]]:
    seen: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, mod in model.named_modules():
        if name and not list(mod.children()):  # leaves only: containers repeat their last child

            def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
                t = first_output(out)
                if t is not None:
                    seen.append((name, t.detach()))

            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def _slice_to(new: torch.Tensor, old_shape: torch.Size) -> torch.Tensor | None:
    if new.dim() != len(old_shape):
        return None
    diff = [d for d in range(new.dim()) if new.shape[d] != old_shape[d]]
    if not diff:
        return new
    if len(diff) == 1 and new.shape[diff[0]] > old_shape[diff[0]]:
        return new.narrow(diff[0], 0, old_shape[diff[0]])
    return None


def max_abs_diff(old_model: nn.Module, new_model: nn.Module, x: Any) -> float:
    """max |f_new(x) - f_old(x)| in eval mode (training flags restored afterwards)."""
    with eval_mode(old_model, new_model), torch.no_grad():
        a, b = first_output(old_model(x)), first_output(new_model(x))
    assert a is not None and b is not None
    return float((a - b).abs().max())


def verify_preserved(
    old_model: nn.Module, new_model: nn.Module, x: Any, op: str, rel: float | None = None
) -> float:
    """Raise ``VerificationError`` if ``new_model(x)`` differs from ``old_model(x)`` beyond tolerance.

    Returns the max absolute error. Both models are run in eval mode; their flags are restored.
    """
    with eval_mode(old_model, new_model):
        old_out, old_seen = _record_outputs(old_model, x)
        try:
            new_out, new_seen = _record_outputs(new_model, x)
        except Exception as exc:  # a forward reading a width netgrow does not track (a constant, another size)
            raise VerificationError(
                f"{op}: the grown model no longer runs: {type(exc).__name__}: {exc}. Its forward reads a width "
                f"netgrow cannot follow (a constant, or a size taken from a tensor of another width); write -1 "
                f"in views or leave that channel group out of the op",
                module=None,
            ) from exc
    a, b = first_output(old_out), first_output(new_out)
    if a is None or b is None or a.shape != b.shape:
        raise VerificationError(
            f"{op}: the output shape changed from {getattr(a, 'shape', None)} to {getattr(b, 'shape', None)}",
            module=None,
        )
    err = float((a - b).abs().max())
    tol = tolerance(a, rel)
    if err <= tol and torch.isfinite(b).all():
        return err
    old_by_name = dict(old_seen)
    culprit = "<output>"
    for name, out in new_seen:
        ref = old_by_name.get(name)
        if ref is None:
            continue
        cut = _slice_to(out, ref.shape)
        if cut is not None and float((cut - ref).abs().max()) > tolerance(ref, rel):
            culprit = name
            break
    raise VerificationError(
        f"{op} did not preserve the function: max |f_new(x) - f_old(x)| = {err:.3g} > tolerance {tol:.3g}; "
        f"first diverging module: {culprit!r}. Pass verify=False to skip this check "
        f"(e.g. with noise > 0 or method='random_pad'), or report the model so the rule can be fixed.",
        module=culprit,
        max_error=err,
    )
