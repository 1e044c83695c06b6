"""Mutual inference (MI, Feng & Panda IV.D): a weighted majority vote of all stage models.

Stage ``i`` of a cumulative run was trained on the first ``K_i`` classes of one class order
(``K_1 ≤ K_2 ≤ … ≤ K_n``), so class index ``k`` means the same class in every stage model. Each model
answers only over the classes it knows: its vote is the argmax of its own ``K_i`` outputs. The votes
are summed with per-model weights over the ``K_n`` classes; the class with the largest weighted vote
wins.

Ties (two or more classes with the same largest weighted vote) go to the *latest* model, i.e. the
bigger network trained on more classes: walking from the last model to the first, the first model
with a positive weight whose vote is one of the tied classes decides. With two models and equal
weights a disagreement is a tie, so MI then answers like the final model.

Plain voting lets two early models that agree outvote the final model on an input of a class they
never saw (they are forced to pick one of theirs), which costs clean accuracy on the later classes.
``defer_unknown=True`` is the variant in which a stage model votes only when the final model's answer
is one of the stage's classes (the final model always votes).

Threat model for adversarial accuracy "with MI" (Table 3): the attacker knows the final network only;
the FGSM examples are made against the final model and then classified by the whole ensemble.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from netgrow.analysis._common import (
    DEFAULT_BATCH_SIZE,
    sweep_bar,
    Data,
    check_levels,
    eval_mode,
    hit_rate,
    iter_batches,
    model_device_dtype,
)
from netgrow.analysis.adversarial import Clip, check_clip, fgsm
from netgrow.errors import NetgrowTypeError, NetgrowValueError

log = logging.getLogger(__name__)

WEIGHT_MODES = ("equal", "val_acc")


def check_probs(probs: Any, where: str) -> list[torch.Tensor]:
    """Validate a list of per-model ``(N, K_i)`` score tensors; returns them as float64 CPU tensors."""
    if isinstance(probs, torch.Tensor) or not isinstance(probs, (list, tuple)):
        raise NetgrowTypeError(
            f"{where}: probs must be a list of (N, K_i) tensors, one per stage model, got {type(probs).__name__}; "
            "for a single model pass [probs]"
        )
    if not probs:
        raise NetgrowValueError(f"{where}: probs is empty; pass one (N, K_i) tensor per stage model")
    out = []
    for i, p in enumerate(probs):
        if not isinstance(p, torch.Tensor) or not p.is_floating_point() or p.ndim != 2 or p.shape[1] < 1:
            desc = f"{p.dtype} {tuple(p.shape)}" if isinstance(p, torch.Tensor) else type(p).__name__
            raise NetgrowValueError(f"{where}: probs[{i}] must be a floating (N, K_i) tensor with K_i >= 1, got {desc}")
        if not bool(torch.isfinite(p).all()):
            raise NetgrowValueError(f"{where}: probs[{i}] contains NaN or inf")
        out.append(p.detach().to("cpu", torch.float64))
    ns = [p.shape[0] for p in out]
    if len(set(ns)) != 1:
        raise NetgrowValueError(
            f"{where}: every model must score the same inputs, but the numbers of rows differ: N = {ns}"
        )
    ks = [p.shape[1] for p in out]
    if any(b < a for a, b in zip(ks, ks[1:])):
        raise NetgrowValueError(
            f"{where}: the models must be in stage order with K_i non-decreasing (each stage knows the classes "
            f"of the ones before), got K = {ks}; pass the stage models' outputs in training order"
        )
    return out


def check_weights(weights: Any, n_models: int, where: str) -> list[float]:
    """Validate explicit per-model weights: ``n_models`` finite numbers >= 0, not all zero."""
    if weights is None:
        return [1.0] * n_models
    if isinstance(weights, str) or not isinstance(weights, (list, tuple, torch.Tensor)):
        raise NetgrowTypeError(f"{where}: weights must be None or a list of numbers, got {weights!r}")
    w = [float(v) for v in weights]
    if len(w) != n_models:
        raise NetgrowValueError(f"{where}: got {len(w)} weights for {n_models} models; pass one weight per model")
    if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise NetgrowValueError(f"{where}: weights must be finite, >= 0 and not all zero, got {w}")
    return w


def resolve_weights(weights: str | Sequence[float] | None, n_models: int,
                    val_accs: Sequence[float] | None = None) -> list[float]:
    """Turn ``"equal"``, ``"val_acc"`` (needs ``val_accs``, one per model) or a list into weights.

        >>> resolve_weights("val_acc", 2, val_accs=[0.9, 0.8])
        [0.9, 0.8]
    """
    where = "netgrow.analysis.resolve_weights"
    if weights is None or weights == "equal":
        return [1.0] * n_models
    if weights == "val_acc":
        if val_accs is None or len(val_accs) != n_models:
            raise NetgrowValueError(
                f"{where}: weights='val_acc' needs one validation accuracy per model ({n_models}), got {val_accs!r}"
            )
        return check_weights(val_accs, n_models, where)
    if isinstance(weights, str):
        raise NetgrowValueError(f"{where}: unknown weights {weights!r}; use one of {WEIGHT_MODES} or a list of numbers")
    return check_weights(weights, n_models, where)


def participation(probs: Sequence[torch.Tensor], defer_unknown: bool = False) -> list[torch.Tensor]:
    """Which rows each model votes on: all, or (``defer_unknown``) only the rows the final model assigns
    to a class that model was trained on (the final model always votes)."""
    n = probs[0].shape[0]
    if not defer_unknown:
        return [torch.ones(n, dtype=torch.bool) for _ in probs]
    final = probs[-1].argmax(1)
    return [final < p.shape[1] for p in probs]


def mutual_vote(probs: Sequence[torch.Tensor], weights: Sequence[float] | None = None,
                defer_unknown: bool = False) -> torch.Tensor:
    """Weighted majority vote of stage models; returns int64 labels ``(N,)`` on the CPU.

    ``probs``: one ``(N, K_i)`` tensor of class probabilities (or logits: only the argmax is used) per
    stage model, in stage order, class index ``k`` meaning the same class in all. Each model votes for
    its argmax over its own ``K_i`` classes with its weight (default: all equal). Ties go to the latest
    model among those voting for a tied class (see the module docstring).

    ``defer_unknown=True``: a stage model does not vote on an input that the final model assigns to a
    class the stage never saw (it cannot know that class, so it defers instead of outvoting the final
    model with a class it was forced to pick). Default False: every model votes on every input.

    Example (class 2 is known only to the last model; it wins 2 votes to 1)::

        >>> import torch
        >>> p1 = torch.tensor([[0.9, 0.1]])
        >>> p2 = torch.tensor([[0.1, 0.2, 0.7]])
        >>> p3 = torch.tensor([[0.1, 0.1, 0.6, 0.2]])
        >>> mutual_vote([p1, p2, p3]).tolist()
        [2]
        >>> mutual_vote([p1, p2, p3], weights=[3.0, 1.0, 1.0]).tolist()
        [0]
        >>> mutual_vote([p1, p2, p3], weights=[3.0, 1.0, 1.0], defer_unknown=True).tolist()  # p1 defers
        [2]
    """
    where = "netgrow.analysis.mutual_vote"
    ps = check_probs(probs, where)
    w = check_weights(weights, len(ps), where)
    n = ps[0].shape[0]
    k_max = ps[-1].shape[1]
    rows = torch.arange(n)
    votes = [p.argmax(1) for p in ps]  # first maximal index within the model's own classes
    voting = participation(ps, defer_unknown)
    score = torch.zeros(n, k_max, dtype=torch.float64)
    for v, on, wi in zip(votes, voting, w):
        score[rows[on], v[on]] += wi
    best = score.max(1, keepdim=True).values
    # float sums of different weights that should be equal (0.1 + 0.2 vs 0.3) count as tied
    tied = score >= best - 1e-9 * sum(w)
    labels = score.argmax(1)
    unresolved = tied.sum(1) > 1
    for v, on, wi in reversed(list(zip(votes, voting, w))):
        if wi <= 0:
            continue
        take = unresolved & on & tied[rows, v]
        labels[take] = v[take]
        unresolved &= ~take
    # only possible when no voter with a positive weight took part (a zero-weight final model): ask it
    labels[unresolved] = votes[-1][unresolved]
    return labels


def soft_vote(probs: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted soft vote: ``(labels, confidence)``, both ``(N,)`` on the CPU.

    Each model's class probabilities (softmax over its own ``K_i`` classes) are zero-padded to the final
    model's ``K_n`` classes and averaged with ``weights`` (normalised to sum to 1; default equal, e.g. each
    stage's validation accuracy). The label is the argmax of the average (the first maximal class), the
    confidence its value (used for no-decision thresholds).

    Example (weights 0.5 / 0.5: class 0 averages (0.9 + 0.1) / 2 = 0.5 > (0 + 0.7) / 2 = 0.35)::

        >>> import torch
        >>> labels, conf = soft_vote([torch.tensor([[0.9, 0.1]]), torch.tensor([[0.1, 0.2, 0.7]])])
        >>> labels.tolist(), [round(c, 3) for c in conf.tolist()]
        ([0], [0.5])
    """
    where = "netgrow.analysis.soft_vote"
    ps = check_probs(probs, where)
    w = check_weights(weights, len(ps), where)
    total = sum(w)
    k_max = ps[-1].shape[1]
    avg = torch.zeros(ps[0].shape[0], k_max, dtype=torch.float64)
    for p, wi in zip(ps, w):
        avg[:, : p.shape[1]] += (wi / total) * p
    conf, labels = avg.max(1)
    return labels, conf


@torch.no_grad()
def _probs_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    device, dtype = model_device_dtype(model)
    return model(x.to(device=device, dtype=dtype)).float().softmax(1).cpu()


def _check_models(models: Any, where: str) -> list[nn.Module]:
    if isinstance(models, nn.Module) or not isinstance(models, (list, tuple)) or not models:
        raise NetgrowTypeError(f"{where}: models must be a non-empty list of stage models in stage order")
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise NetgrowTypeError(f"{where}: models[{i}] is a {type(m).__name__}, not an nn.Module")
    return list(models)


def stage_probs(models: Sequence[nn.Module], data: Data, batch_size: int = DEFAULT_BATCH_SIZE
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Softmax outputs ``[(N, K_i)]`` of every stage model on ``data`` (eval mode) and the labels ``(N,)``."""
    where = "netgrow.analysis.stage_probs"
    models = _check_models(models, where)
    outs: list[list[torch.Tensor]] = [[] for _ in models]
    ys = []
    with _all_eval(models):
        for x, y in iter_batches(data, batch_size, where):
            for i, m in enumerate(models):
                outs[i].append(_probs_of(m, x))
            ys.append(y.to("cpu", torch.int64))
    if not ys:
        raise NetgrowValueError(f"{where}: data is empty; pass at least one sample")
    return [torch.cat(o) for o in outs], torch.cat(ys)


def _all_eval(models: Sequence[nn.Module]) -> contextlib.ExitStack:
    """Eval mode for several models at once (each model's flags restored on exit)."""
    stack = contextlib.ExitStack()
    for m in models:
        stack.enter_context(eval_mode(m))
    return stack


def adversarial_stage_probs(
    models: Sequence[nn.Module],
    data: Data,
    eps: float,
    clip: Clip = (0.0, 1.0),
    attacked: int = -1,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stage-model softmax outputs on FGSM examples made against ``models[attacked]`` (default: the final one).

    This is the paper's threat model for MI: the attacker knows the final network only.
    """
    where = "netgrow.analysis.adversarial_stage_probs"
    models = _check_models(models, where)
    eps = check_levels([eps], "eps", where)[0]
    clip = check_clip(clip, where)
    if not -len(models) <= attacked < len(models):
        raise NetgrowValueError(f"{where}: attacked={attacked} is not a model index for {len(models)} models")
    outs: list[list[torch.Tensor]] = [[] for _ in models]
    ys = []
    with _all_eval(models):
        for x, y in iter_batches(data, batch_size, where):
            x_adv = fgsm(models[attacked], x, y, eps, clip)
            for i, m in enumerate(models):
                outs[i].append(_probs_of(m, x_adv))
            ys.append(y.to("cpu", torch.int64))
    if not ys:
        raise NetgrowValueError(f"{where}: data is empty; pass at least one sample")
    return [torch.cat(o) for o in outs], torch.cat(ys)


def mutual_accuracy(probs: Sequence[torch.Tensor], y: torch.Tensor,
                    weights: Sequence[float] | None = None, defer_unknown: bool = False) -> float:
    """Accuracy of the MI vote of ``probs`` against labels ``y``."""
    labels = mutual_vote(probs, weights, defer_unknown)
    if labels.shape[0] != y.shape[0]:
        raise NetgrowValueError(
            f"netgrow.analysis.mutual_accuracy: {labels.shape[0]} predictions but {y.shape[0]} labels"
        )
    return hit_rate(labels == y.cpu())


def mutual_inference(models: Sequence[nn.Module], data: Data, weights: str | Sequence[float] | None = "equal",
                     val_accs: Sequence[float] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                     defer_unknown: bool = False) -> dict[str, Any]:
    """MI on clean data: ``{"accuracy", "labels", "final_accuracy", "weights"}``.

    ``weights``: ``"equal"``, ``"val_acc"`` (each model's validation accuracy, from ``val_accs``) or a list.
    """
    models = _check_models(models, "netgrow.analysis.mutual_inference")
    w = resolve_weights(weights, len(models), val_accs)
    probs, y = stage_probs(models, data, batch_size)
    labels = mutual_vote(probs, w, defer_unknown)
    return {
        "accuracy": hit_rate(labels == y),
        "final_accuracy": hit_rate(probs[-1].argmax(1) == y),
        "labels": labels,
        "weights": w,
    }


def mutual_fgsm(
    models: Sequence[nn.Module],
    data: Data,
    eps_list: Sequence[float],
    weights: str | Sequence[float] | None = "equal",
    val_accs: Sequence[float] | None = None,
    clip: Clip = (0.0, 1.0),
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | str = False,
    defer_unknown: bool = False,
) -> list[dict[str, float]]:
    """Adversarial accuracy with and without MI per ε: ``[{"eps", "mi_accuracy", "mi_soft_accuracy",
    "final_accuracy"}]`` (``mi_soft_accuracy``: :func:`soft_vote` with the same weights).

    FGSM examples are made against the final model (the attacker does not know the earlier stage
    models), then classified by the final model alone and by the MI vote of all stage models.
    """
    where = "netgrow.analysis.mutual_fgsm"
    models = _check_models(models, where)
    levels = check_levels(eps_list, "eps_list", where)
    w = resolve_weights(weights, len(models), val_accs)
    rows = []
    for eps in sweep_bar(levels, "fgsm (MI)", progress):
        probs, y = adversarial_stage_probs(models, data, eps, clip, batch_size=batch_size)
        rows.append({
            "eps": eps,
            "mi_accuracy": mutual_accuracy(probs, y, w, defer_unknown),
            "mi_soft_accuracy": hit_rate(soft_vote(probs, w)[0] == y.cpu()),
            "final_accuracy": hit_rate(probs[-1].argmax(1) == y),
        })
    return rows
