"""No-decision detection (Feng & Panda IV.D, Figs. 5 and 6; thresholding after Hendrycks & Gimpel).

A classifier may answer "no decision" instead of a class. With a threshold δ ∈ [0, 1]:

- standard rule (one model): decide iff the model's max softmax probability ``> δ``;
- MI rule (all stage models): decide iff *every* stage model's max softmax probability (over its own
  classes) ``> δ``, i.e. iff ``min_i max_k p_i[k] > δ``; the decision is then the MI vote
  (:func:`netgrow.analysis.mutual_vote`). One unsure model is enough for no decision — the "stronger
  notion of no-decision" of Fig. 5. With ``defer_unknown`` (see :func:`mutual_vote`) only the models
  that vote on an input are asked for their confidence.

The comparison is strict so that δ = 0 decides every input (a softmax maximum is at least 1/K > 0)
and δ = 1 decides none. Every input falls in exactly one bucket: *correct* (decided, right class),
*no decision*, *wrong* (decided, wrong class); the buckets sum to N.

TNR / FNR (Fig. 6). A decision is the "negative" outcome of the detector, no decision the "positive"
one (the input is flagged). The ground truth comes from the threshold-free prediction (the same model,
or the same MI vote, without a threshold): *negatives* are the inputs it classifies correctly,
*positives* the inputs it misclassifies (on the adversarial set: the adversarial examples that fool it).
Then

- TNR = correct(δ) / correct(0): the fraction of negatives that still get a (right) decision,
- FNR = wrong(δ) / wrong(0): the fraction of positives that still get a (wrong) decision.

The paper's aim, "increase TNR while keeping FNR as low as possible", is the upper-left corner of the
TNR-vs-FNR plot. δ = 0 gives (FNR, TNR) = (1, 1), δ = 1 gives (0, 0). A rate with an empty denominator
(a model that is never wrong, or never right) is NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from netgrow.analysis.mutual import check_probs, check_weights, mutual_vote, participation
from netgrow.errors import NetgrowTypeError, NetgrowValueError

log = logging.getLogger(__name__)

RULES = ("standard", "mi")


def check_thresholds(thresholds: Any, where: str) -> list[float]:
    """A non-empty list of thresholds, each finite and in [0, 1]."""
    if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        thresholds = [thresholds]
    try:
        ts = [float(t) for t in thresholds]
    except (TypeError, ValueError):
        raise NetgrowTypeError(f"{where}: thresholds must be a list of numbers in [0, 1], got {thresholds!r}") from None
    if not ts:
        raise NetgrowValueError(f"{where}: thresholds is empty; pass at least one δ in [0, 1]")
    bad = [t for t in ts if not (math.isfinite(t) and 0.0 <= t <= 1.0)]
    if bad:
        raise NetgrowValueError(
            f"{where}: thresholds are softmax confidences and must lie in [0, 1], got {bad[0]!r}; "
            "use e.g. numpy.linspace(0, 1, 101)"
        )
    return ts


def _check_is_probability(p: torch.Tensor, where: str, i: int | None = None) -> None:
    name = "probs" if i is None else f"probs[{i}]"
    if bool((p < -1e-6).any()) or bool((p > 1 + 1e-6).any()) or bool(((p.sum(1) - 1).abs() > 1e-3).any()):
        raise NetgrowValueError(
            f"{where}: {name} must hold softmax probabilities (rows in [0, 1] summing to 1) because the "
            "threshold is a confidence; these look like logits — pass logits.softmax(dim=1)"
        )


def _check_labels(y: Any, n: int, where: str) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise NetgrowTypeError(f"{where}: y must be a 1-D integer tensor of labels")
    if y.shape[0] != n:
        raise NetgrowValueError(f"{where}: {n} predictions but {y.shape[0]} labels")
    y = y.to("cpu", torch.int64)
    if n and int(y.min()) < 0:
        raise NetgrowValueError(f"{where}: labels must be >= 0, found {int(y.min())}")
    return y


def standard_scores(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prediction, confidence)`` of one model: argmax and max softmax probability per row."""
    where = "netgrow.analysis.standard_scores"
    (p,) = check_probs([probs], where)
    _check_is_probability(p, where)
    conf, pred = p.max(1)
    return pred, conf


def mi_scores(probs: Sequence[torch.Tensor], weights: Sequence[float] | None = None,
              defer_unknown: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(MI vote, confidence)``: the confidence is the smallest of the models' max softmax probabilities
    (with ``defer_unknown``, of the models that vote on that input; the final model always does)."""
    where = "netgrow.analysis.mi_scores"
    ps = check_probs(probs, where)
    for i, p in enumerate(ps):
        _check_is_probability(p, where, i)
    pred = mutual_vote(ps, check_weights(weights, len(ps), where), defer_unknown)
    voting = participation(ps, defer_unknown)
    maxima = torch.stack([torch.where(on, p.max(1).values, torch.ones_like(on, dtype=p.dtype))
                          for p, on in zip(ps, voting)], 1)
    return pred, maxima.min(1).values


def _rate(num: int, den: int) -> float:
    return num / den if den else float("nan")


def decision_buckets(pred: torch.Tensor, conf: torch.Tensor, y: torch.Tensor,
                     thresholds: Sequence[float]) -> list[dict[str, float]]:
    """For each δ: ``{"threshold", "correct", "no_decision", "wrong", "tnr", "fnr"}`` (counts; they sum to N).

    An input gets a decision iff ``conf > δ``.
    """
    where = "netgrow.analysis.decision_buckets"
    ts = check_thresholds(thresholds, where)
    if pred.shape != conf.shape or pred.ndim != 1:
        raise NetgrowValueError(f"{where}: pred and conf must be 1-D of the same length, got "
                                f"{tuple(pred.shape)} and {tuple(conf.shape)}")
    y = _check_labels(y, pred.shape[0], where)
    right = pred.cpu() == y
    n_right = int(right.sum())
    n_wrong = int((~right).sum())
    conf = conf.cpu().double()
    rows = []
    for t in ts:
        decide = conf > t
        c = int((decide & right).sum())
        w = int((decide & ~right).sum())
        rows.append({
            "threshold": t,
            "correct": c,
            "no_decision": int(y.shape[0]) - c - w,
            "wrong": w,
            "tnr": _rate(c, n_right),
            "fnr": _rate(w, n_wrong),
        })
    return rows


def no_decision_buckets(probs: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor,
                        thresholds: Sequence[float], rule: str = "standard",
                        weights: Sequence[float] | None = None, defer_unknown: bool = False) -> list[dict[str, float]]:
    """Buckets and TNR/FNR per δ under the ``"standard"`` rule (``probs`` one ``(N, K)`` tensor) or the
    ``"mi"`` rule (``probs`` a list of ``(N, K_i)`` tensors, one per stage model).

    Example::

        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> rows = no_decision_buckets(p, torch.tensor([0, 1, 1]), [0.0, 0.65, 1.0])
        >>> [(r["correct"], r["no_decision"], r["wrong"]) for r in rows]
        [(2, 0, 1), (2, 1, 0), (0, 3, 0)]
    """
    if rule == "standard":
        if not isinstance(probs, torch.Tensor):
            raise NetgrowTypeError("netgrow.analysis.no_decision_buckets: rule='standard' needs one (N, K) tensor")
        pred, conf = standard_scores(probs)
    elif rule == "mi":
        pred, conf = mi_scores(probs, weights, defer_unknown)  # type: ignore[arg-type]
    else:
        raise NetgrowValueError(f"netgrow.analysis.no_decision_buckets: unknown rule {rule!r}; use one of {RULES}")
    return decision_buckets(pred, conf, y, thresholds)


def detection_curve(pred: torch.Tensor, conf: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """The exact TNR-vs-FNR curve over every threshold that changes a decision.

    Returns ``{"threshold", "fnr", "tnr"}`` lists, thresholds ascending from 0 (FNR = TNR = 1) to the
    largest confidence (no decisions, FNR = TNR = 0); both rates are non-increasing along the list.
    """
    where = "netgrow.analysis.detection_curve"
    if pred.shape != conf.shape or pred.ndim != 1 or pred.numel() == 0:
        raise NetgrowValueError(f"{where}: pred and conf must be non-empty 1-D tensors of the same length")
    y = _check_labels(y, pred.shape[0], where)
    right = (pred.cpu() == y).to(torch.int64)
    conf = conf.cpu().double()
    values, inverse = torch.unique(conf, sorted=True, return_inverse=True)
    right_at = torch.bincount(inverse, weights=right.double(), minlength=values.numel())
    wrong_at = torch.bincount(inverse, weights=(1 - right).double(), minlength=values.numel())
    n_right = float(right.sum())
    n_wrong = float((1 - right).sum())
    # decided at δ = values[j]: strictly above it
    right_above = n_right - torch.cumsum(right_at, 0)
    wrong_above = n_wrong - torch.cumsum(wrong_at, 0)
    thresholds = [0.0] + values.tolist()
    c = [n_right] + right_above.tolist()
    w = [n_wrong] + wrong_above.tolist()
    if thresholds[1] == 0.0:  # a zero confidence: δ = 0 is already the first unique value
        thresholds, c, w = thresholds[1:], c[1:], w[1:]
    return {
        "threshold": thresholds,
        "fnr": [_rate(int(v), int(n_wrong)) for v in w],
        "tnr": [_rate(int(v), int(n_right)) for v in c],
    }


def tnr_at_fnr(fnr: Sequence[float], tnr: Sequence[float], target: float = 0.05) -> float:
    """The best TNR among the curve's operating points with FNR <= ``target`` (no interpolation).

    The all-no-decision detector (FNR = TNR = 0) always meets the target, so the answer is at least 0;
    NaN when the FNR is undefined (no positives).

        >>> tnr_at_fnr([1.0, 0.5, 0.04, 0.0], [1.0, 0.9, 0.6, 0.0], target=0.05)
        0.6
    """
    where = "netgrow.analysis.tnr_at_fnr"
    if not (isinstance(target, (int, float)) and 0.0 <= float(target) <= 1.0):
        raise NetgrowValueError(f"{where}: target FNR must be in [0, 1], got {target!r}")
    f = [float(v) for v in fnr]
    t = [float(v) for v in tnr]
    if len(f) != len(t) or not f:
        raise NetgrowValueError(
            f"{where}: fnr and tnr must be non-empty and of the same length, got {len(f)} and {len(t)}"
        )
    points = [(a, b) for a, b in zip(f, t) if not math.isnan(a)]
    if not points:
        return float("nan")
    ok = [b for a, b in points if a <= target + 1e-12 and not math.isnan(b)]
    return max(ok + [0.0])


def threshold_at_fnr(curve: dict[str, list[float]], target: float = 0.05) -> float:
    """The threshold δ of the curve's operating point with the best TNR among those with FNR <= ``target``
    (the smallest such δ on a tie). Pick it on the **validation** set's curve, then apply it to the test
    set (:func:`decision_buckets`), so the test set is only reported.

        >>> threshold_at_fnr({"threshold": [0.0, 0.5, 0.8, 0.95], "fnr": [1.0, 0.2, 0.04, 0.0],
        ...                   "tnr": [1.0, 0.9, 0.6, 0.0]}, 0.05)
        0.8
    """
    best: tuple[float, float] | None = None
    for t, f, r in zip(curve["threshold"], curve["fnr"], curve["tnr"]):
        if f == f and f <= target and (best is None or r > best[1]):  # f == f: not NaN
            best = (t, r)
    if best is None:  # no wrong answers at all (FNR undefined): decide everything
        return 0.0
    return float(best[0])

