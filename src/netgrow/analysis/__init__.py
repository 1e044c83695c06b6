"""netgrow.analysis: robustness of grown networks and mutual inference across stage models.

Pure functions (any PyTorch classifier returning logits; ``data`` is ``(x, y)`` or an iterable of
batches of normalised inputs)::

    noise_robustness(model, data, sigmas, draws=5, seed=0)        # Fig. 4 (a, b)
    ablation_robustness(model, data, fractions, trials=5, seed=0) # Fig. 4 (c, d)
    fgsm(model, x, y, eps, clip=(0.0, 1.0))                       # the adversarial batch
    fgsm_accuracy(model, data, eps_list, clip=(0.0, 1.0))
    mutual_vote(probs, weights=None)                              # MI labels
    soft_vote(probs, weights=None)                                # MI soft vote: (labels, confidence)
    mutual_fgsm(models, data, eps_list, weights="equal")          # Table 3 (w/ and w/o MI)
    no_decision_buckets(probs, y, thresholds, rule="standard"|"mi")
    detection_curve(pred, conf, y); tnr_at_fnr(fnr, tnr, target=0.05)  # Fig. 6

On run directories: ``analyze_run(run_dir, baseline=None, out_dir=None, ...)`` (``netgrow analyze``).
Definitions (buckets, TNR/FNR, the MI rule, the threat model) are in docs/analysis.md.
"""

from __future__ import annotations

from typing import Any

from netgrow.analysis.ablation import ablate, ablation_robustness, ablation_targets
from netgrow.analysis.detection import (
    check_thresholds,
    decision_buckets,
    detection_curve,
    mi_scores,
    no_decision_buckets,
    standard_scores,
    threshold_at_fnr,
    tnr_at_fnr,
)
from netgrow.analysis.adversarial import Normalized, fgsm, fgsm_accuracy, normalized_bounds
from netgrow.analysis.mutual import (
    adversarial_stage_probs,
    mutual_accuracy,
    mutual_fgsm,
    mutual_inference,
    mutual_vote,
    resolve_weights,
    soft_vote,
    stage_probs,
)
from netgrow.analysis.noise import noise_robustness, noisy_accuracy


def __getattr__(name: str) -> Any:
    # analyze_run pulls in matplotlib and the data/train packages: import it only when asked for
    if name == "analyze_run":
        from netgrow.analysis.run_analysis import analyze_run

        return analyze_run
    raise AttributeError(f"module 'netgrow.analysis' has no attribute {name!r}")


__all__ = [
    "Normalized",
    "ablate",
    "ablation_robustness",
    "ablation_targets",
    "adversarial_stage_probs",
    "analyze_run",
    "check_thresholds",
    "decision_buckets",
    "detection_curve",
    "fgsm",
    "fgsm_accuracy",
    "mi_scores",
    "mutual_accuracy",
    "mutual_fgsm",
    "mutual_inference",
    "mutual_vote",
    "soft_vote",
    "no_decision_buckets",
    "noise_robustness",
    "noisy_accuracy",
    "normalized_bounds",
    "resolve_weights",
    "stage_probs",
    "standard_scores",
    "threshold_at_fnr",
    "tnr_at_fnr",
]
