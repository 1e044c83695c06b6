"""``analyze_run``: the robustness analysis of Feng & Panda IV.C/IV.D on a netgrow run directory.

For a (cumulative) run, and optionally a scratch baseline run on the same data set, it measures

- noise and ablation robustness of the final model (and the baseline): Fig. 4;
- FGSM adversarial accuracy vs ε: grown w/ MI, grown w/o MI (final model), baseline: Table 3;
- no-decision buckets and TNR-vs-FNR curves on the clean and an adversarial test set, standard rule
  (final model, baseline) and MI rule: Fig. 6;

and writes into ``out_dir`` (default ``RUN_DIR/analysis``): ``analysis.json``, ``noise.csv``,
``ablation.csv``, ``adversarial.csv``, ``table3.md``, ``detection_buckets.csv``,
``detection_curves.csv`` and the PNGs ``fig4_noise.png``, ``fig4_ablation.png``, ``table3_fgsm.png``,
``fig6_clean.png``, ``fig6_adversarial.png``. Definitions: docs/analysis.md.

ε is a fraction of the input's value range (pixel/255 for images, as in the paper): the attack works on
the raw inputs scaled to [0, 1] and clips to [0, 1]. σ (noise) is in normalised-input units.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netgrow.analysis import plots, report
from netgrow.train.metrics import json_safe
from netgrow.analysis._common import check_count, check_levels, hit_rate, sweep_bar
from netgrow.analysis.ablation import ablation_robustness, ablation_targets
from netgrow.analysis.adversarial import Normalized
from netgrow.analysis.detection import (
    check_thresholds,
    decision_buckets,
    detection_curve,
    mi_scores,
    standard_scores,
    threshold_at_fnr,
    tnr_at_fnr,
)
from netgrow.analysis.mutual import (
    WEIGHT_MODES,
    adversarial_stage_probs,
    mutual_vote,
    soft_vote,
    resolve_weights,
    stage_probs,
)
from netgrow.analysis.noise import noise_robustness
from netgrow.analysis.runs import (
    Run,
    align_baseline,
    check_same_data,
    check_stage_classes,
    load_run_data,
    load_test_set,
    open_run,
)
from netgrow.errors import NetgrowValueError

log = logging.getLogger(__name__)

DEFAULT_SIGMAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_EPS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)  # Table 3's ε
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(i / 20 for i in range(21))

GROWN, MI, BASELINE = "grown (final model)", "grown (w/ MI)", "scratch baseline"


def _area(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Trapezoid area under ``ys(xs)`` and that area divided by the x-range (the curve's mean height)."""
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]))
    span = xs[-1] - xs[0] if len(xs) > 1 else 0.0
    return area, (area / span if span > 0 else float("nan"))


def _with_area(rows: list[dict[str, Any]], xkey: str) -> dict[str, Any]:
    pts = sorted((r[xkey], r["mean"]) for r in rows)
    area, mean_height = _area([p[0] for p in pts], [p[1] for p in pts])
    return {"rows": rows, "area": area, "normalized_area": mean_height}


def _num_outputs(model: nn.Module, x: torch.Tensor) -> int:
    was = model.training
    model.eval()
    with torch.no_grad():
        p = next(model.parameters(), None)
        out = model(x[:1].to(device=p.device if p is not None else "cpu"))
    model.train(was)
    return int(out.shape[1])


def _guess_classes(run: Run) -> int:
    """K of the final stage before any data is loaded: the summary, else the last Linear layer."""
    if run.final.classes is not None:
        return run.final.classes
    linears = [m for m in run.final.model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NetgrowValueError(
            f"netgrow.analysis: cannot tell how many classes the final model of {str(run.run_dir)!r} has "
            "(no stage summary and no Linear layer); restore stages/stage{i}.json"
        )
    return int(linears[-1].out_features)


def _detection(pred: torch.Tensor, conf: torch.Tensor, y: torch.Tensor, thresholds: list[float],
               fnr_target: float) -> dict[str, Any]:
    curve = detection_curve(pred, conf, y)
    return {
        "accuracy": hit_rate(pred == y),
        "buckets": decision_buckets(pred, conf, y, thresholds),
        "curve": curve,
        "tnr_at_fnr": tnr_at_fnr(curve["fnr"], curve["tnr"], fnr_target),
    }


def _val_thresholds(run: Any, models: list[Any], ks: list[int], w: list[float], bs: int, target: float,
                    detection: dict[str, Any], test_probs: dict[str, Any], data: tuple[Any, Any]) -> None:
    """The operating threshold of every grown method chosen on the run's validation split (best TNR at
    FNR <= target there) and the test set's TNR / FNR at it (``val_threshold``, ``at_val_threshold``).
    Runs without a validation split get none (their ``tnr_at_fnr`` is the curve's best test point)."""
    if not run.val_fraction > 0:
        return
    val = load_test_set(run, ks[-1], split="val", data=data)
    probs_val, yv = stage_probs(models, (val.x, val.y), bs)

    def scores(ps: list[Any]) -> dict[str, Any]:
        return {"final": standard_scores(ps[-1]), "mi": mi_scores(ps, w), "mi_defer": mi_scores(ps, w, defer_unknown=True),
                "mi_soft": soft_vote(ps, w)}

    val_scores = scores(probs_val)
    for set_name, (ps, y) in test_probs.items():
        test_scores = scores(ps)
        for m, (pv, cv) in val_scores.items():
            t = threshold_at_fnr(detection_curve(pv, cv, yv), target)
            pred, conf = test_scores[m]
            b = decision_buckets(pred, conf, y, [t])[0]
            detection[set_name][m]["val_threshold"] = t
            detection[set_name][m]["at_val_threshold"] = {"tnr": b["tnr"], "fnr": b["fnr"]}


def _validate(sigmas: Any, fractions: Any, eps: Any, thresholds: Any, draws: Any, trials: Any, max_samples: Any,
              weights: Any, detect_eps: Any, fnr_target: Any) -> dict[str, Any]:
    where = "netgrow.analysis.analyze_run"
    out = {
        "sigmas": check_levels(sigmas, "sigmas", where),
        "fractions": check_levels(fractions, "fractions", where, upper=1.0),
        "eps": check_levels(eps, "eps", where),
        "thresholds": check_thresholds(thresholds, where),
        "draws": check_count(draws, "draws", where),
        "trials": check_count(trials, "trials", where),
        "detect_eps": check_levels([detect_eps], "detect_eps", where)[0],
        "fnr_target": check_levels([fnr_target], "fnr_target", where, upper=1.0)[0],
    }
    if max_samples is not None:
        check_count(max_samples, "max_samples", where)
    if isinstance(weights, str) and weights not in WEIGHT_MODES:
        raise NetgrowValueError(f"{where}: unknown weights {weights!r}; use one of {WEIGHT_MODES} or a list of numbers")
    return out


def analyze_run(
    run_dir: str | os.PathLike[str],
    baseline: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    eps: Sequence[float] = DEFAULT_EPS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    draws: int = 5,
    trials: int = 5,
    max_samples: int | None = None,
    weights: str | Sequence[float] = "equal",
    detect_eps: float = 0.05,
    fnr_target: float = 0.05,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    """Analyse the run in ``run_dir`` (and the scratch run ``baseline``); returns what analysis.json holds.

    ``sigmas``: noise levels (normalised-input units); ``fractions``: conv units ablated; ``eps``: FGSM
    strengths (fraction of the input range); ``thresholds``: δ for the bucket table (the TNR/FNR curves
    use every threshold that changes a decision); ``draws``/``trials``: repetitions per noise level /
    ablation fraction; ``max_samples``: a seeded random subset of the test set (quick looks);
    ``weights``: MI vote weights, ``"equal"``, ``"val_acc"`` (each stage's recorded accuracy) or one
    number per stage; ``detect_eps``: ε of the adversarial test set of the detection study;
    ``fnr_target``: the FNR at which TNR is reported. Progress bars unless ``quiet``.

    Example::

        >>> from netgrow.analysis import analyze_run
        >>> res = analyze_run("runs/cumulative", baseline="runs/scratch", max_samples=2000)  # doctest: +SKIP
        >>> res["adversarial"][0]                                                             # doctest: +SKIP
        {'eps': 0.0, 'mi': 0.86, 'final': 0.85, 'baseline': 0.86}
    """
    opts = _validate(sigmas, fractions, eps, thresholds, draws, trials, max_samples, weights, detect_eps, fnr_target)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run = open_run(run_dir, dev)
    base = open_run(baseline, dev) if baseline is not None else None
    if base is not None:
        check_same_data(run, base)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "analysis"
    progress = not quiet

    data = load_run_data(run)  # once: the test samples and (for thresholds) the validation hold-out
    test = load_test_set(run, _guess_classes(run), max_samples=max_samples, seed=seed, data=data)
    models = [st.model for st in run.models]
    ks = check_stage_classes(run, [_num_outputs(m, test.x) for m in models])
    if ks[-1] != len(test.class_order):
        raise NetgrowValueError(
            f"netgrow.analysis: the final model of {str(run.run_dir)!r} has {ks[-1]} outputs but its summary "
            f"records {len(test.class_order)} classes"
        )
    val_accs = [st.val_acc for st in run.models]
    if weights == "val_acc" and any(a is None for a in val_accs):
        missing = [st.index for st in run.models if st.val_acc is None]
        raise NetgrowValueError(
            f"netgrow.analysis: weights='val_acc' needs each stage's validation accuracy, but stage(s) {missing} "
            "have no val_acc in stages/stage{i}.json (trained without a validation split); rerun with "
            "[data] val_fraction > 0, or use weights='equal' or a list"
        )
    w = resolve_weights(weights, len(models), val_accs)  # type: ignore[arg-type]
    base_model = None
    if base is not None:
        k_base = _num_outputs(base.final.model, test.x)
        base_model = align_baseline(run, base, test, k_base)
    log.info("analysing %s: %d stage models (K = %s), %d test samples%s", run.run_dir, len(models), ks,
             test.y.numel(), f", baseline {base.run_dir}" if base else "")

    xy = (test.x, test.y)
    uy = (test.u, test.y)
    raw = [Normalized(m, test.mean_u, test.std_u) for m in models]
    raw_base = Normalized(base_model, test.mean_u, test.std_u) if base_model is not None else None
    bs = batch_size

    # -- clean accuracy: every stage model, MI, the baseline ------------------------------------------
    probs_clean, y = stage_probs(models, xy, bs)
    stage_rows = []
    for st, k, p in zip(run.models, ks, probs_clean):
        own = y < k  # the classes this stage was trained on
        stage_rows.append({
            "stage": st.index, "arch": st.arch, "classes": k,
            "accuracy_all_classes": hit_rate(p.argmax(1) == y),
            "accuracy_own_classes": hit_rate(p[own].argmax(1) == y[own]) if bool(own.any()) else None,
            "recorded_test_acc": st.recorded_acc,
        })
    base_probs_clean = stage_probs([base_model], xy, bs)[0][0] if base_model is not None else None

    # -- Fig. 4: noise and ablation ---------------------------------------------------------------------
    # progress bars name the model they sweep
    grown_label = progress and f"grown, {run.models[-1].arch or 'final model'}"
    base_label = progress and base is not None and f"baseline, {base.final.arch or 'scratch model'}"
    labels = {GROWN: grown_label, BASELINE: base_label}
    noise = {GROWN: _with_area(noise_robustness(models[-1], xy, opts["sigmas"], opts["draws"], seed, bs,
                                                grown_label), "sigma")}
    if base_model is not None:
        noise[BASELINE] = _with_area(
            noise_robustness(base_model, xy, opts["sigmas"], opts["draws"], seed, bs, base_label), "sigma")
    ablation: dict[str, Any] = {}
    for label, model in [(GROWN, models[-1])] + ([(BASELINE, base_model)] if base_model is not None else []):
        if not ablation_targets(model):
            ablation[label] = {"skipped": "the model has no Conv layers"}
            log.warning("ablation skipped for %s: no Conv layers", label)
            continue
        ablation[label] = _with_area(
            ablation_robustness(model, xy, opts["fractions"], opts["trials"], seed, bs, labels[label]), "fraction")

    # -- Table 3: FGSM vs ε (MI: examples against the final model only) --------------------------------
    adversarial = []
    adv_sets: dict[str, Any] = {}
    eps_all = list(opts["eps"]) + ([opts["detect_eps"]] if opts["detect_eps"] not in opts["eps"] else [])
    fgsm_label = progress and ("all stage models" + (" and the baseline" if base is not None else ""))
    for e in sweep_bar(eps_all, "fgsm", fgsm_label):
        probs_adv, _ = adversarial_stage_probs(raw, uy, e, (0.0, 1.0), batch_size=bs)
        row: dict[str, Any] = {
            "eps": e,
            "mi": hit_rate(mutual_vote(probs_adv, w) == y),
            "mi_defer": hit_rate(mutual_vote(probs_adv, w, defer_unknown=True) == y),
            "mi_soft": hit_rate(soft_vote(probs_adv, w)[0] == y),
            "final": hit_rate(probs_adv[-1].argmax(1) == y),
        }
        base_adv = None
        if raw_base is not None:
            base_adv = adversarial_stage_probs([raw_base], uy, e, (0.0, 1.0), batch_size=bs)[0][0]
            row["baseline"] = hit_rate(base_adv.argmax(1) == y)
        if e in opts["eps"]:
            adversarial.append(row)
        if e == opts["detect_eps"]:
            adv_sets = {"probs": probs_adv, "baseline": base_adv}

    # -- Fig. 6: no-decision buckets and TNR-vs-FNR -----------------------------------------------------
    detection: dict[str, Any] = {}
    for set_name, (ps, bp) in {"clean": (probs_clean, base_probs_clean),
                               "adversarial": (adv_sets["probs"], adv_sets["baseline"])}.items():
        methods = {
            "final": standard_scores(ps[-1]),
            "mi": mi_scores(ps, w),
            "mi_defer": mi_scores(ps, w, defer_unknown=True),
            "mi_soft": soft_vote(ps, w),
        }
        if bp is not None:
            methods["baseline"] = standard_scores(bp)
        detection[set_name] = {m: _detection(pred, conf, y, opts["thresholds"], opts["fnr_target"])
                               for m, (pred, conf) in methods.items()}
    _val_thresholds(run, models, ks, w, bs, opts["fnr_target"], detection,
                    {"clean": (probs_clean, y), "adversarial": (adv_sets["probs"], y)}, data)

    result: dict[str, Any] = {
        "run": str(run.run_dir),
        "baseline": str(base.run_dir) if base else None,
        "name": run.config.get("name"),
        "data": {"name": run.data_name, "classes": len(test.class_order), "class_order": test.class_order,
                 "class_names": test.class_names, "test_samples": int(y.numel()), "raw_range": list(test.raw_range)},
        "settings": {**opts, "max_samples": max_samples, "weights": w,
                     "weights_mode": weights if isinstance(weights, str) else "user",
                     "batch_size": bs, "seed": seed, "device": str(dev), "torch": torch.__version__,
                     "python": platform.python_version()},
        "clean": {"stages": stage_rows, "final": stage_rows[-1]["accuracy_all_classes"],
                  "mi": hit_rate(mutual_vote(probs_clean, w) == y),
                  "mi_defer": hit_rate(mutual_vote(probs_clean, w, defer_unknown=True) == y),
                  "mi_soft": hit_rate(soft_vote(probs_clean, w)[0] == y),
                  "baseline": hit_rate(base_probs_clean.argmax(1) == y)
                  if base_probs_clean is not None else None},
        "noise": noise,
        "ablation": ablation,
        "adversarial": adversarial,
        "detection": detection,
    }
    _warn_recorded(run, stage_rows, max_samples)
    write_outputs(result, out)
    log.info("analysis written to %s", out)
    return json_safe(result)


def _warn_recorded(run: Run, stage_rows: list[dict[str, Any]], max_samples: int | None) -> None:
    # the trainer scored each stage on its own classes; on the full test set the numbers must agree
    last = stage_rows[-1]
    rec = last["recorded_test_acc"]
    if max_samples is None and rec is not None and abs(rec - last["accuracy_own_classes"]) > 0.005:
        log.warning("final stage of %s: recorded test accuracy %.4f but %.4f here; is config.json's data section "
                    "the one the run was trained with?", run.run_dir, rec, last["accuracy_own_classes"])


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """Write analysis.json, the CSVs, table3.md and the PNGs of one ``analyze_run`` result into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "analysis.json", result)
    report.write_csv(out / "noise.csv", ["model", "sigma", "mean", "std", "accs"],
                     [(m, r["sigma"], r["mean"], r["std"], r["accs"]) for m, c in result["noise"].items()
                      for r in c["rows"]])
    report.write_csv(out / "ablation.csv", ["model", "fraction", "mean", "std", "accs"],
                     [(m, r["fraction"], r["mean"], r["std"], r["accs"]) for m, c in result["ablation"].items()
                      for r in c.get("rows", [])])
    report.write_csv(out / "adversarial.csv", ["eps", "mi", "mi_defer", "mi_soft", "final", "baseline"],
                     [(r["eps"], r["mi"], r["mi_defer"], r["mi_soft"], r["final"], r.get("baseline"))
                      for r in result["adversarial"]])
    report.write_csv(out / "detection_buckets.csv",
                     ["set", "method", "threshold", "correct", "no_decision", "wrong", "tnr", "fnr"],
                     [(s, m, b["threshold"], b["correct"], b["no_decision"], b["wrong"], b["tnr"], b["fnr"])
                      for s, d in result["detection"].items() for m, v in d.items() for b in v["buckets"]])
    report.write_csv(out / "detection_curves.csv", ["set", "method", "threshold", "fnr", "tnr"],
                     [(s, m, t, f, r) for s, d in result["detection"].items() for m, v in d.items()
                      for t, f, r in zip(v["curve"]["threshold"], v["curve"]["fnr"], v["curve"]["tnr"])])
    s = result["settings"]
    notes = [
        f"Test samples: {result['data']['test_samples']} of {result['data']['name']} "
        f"({result['data']['classes']} classes). ε is a fraction of the input range (pixel/255 for images); FGSM, L∞.",
        "w/ MI: weighted majority vote of all stage models on FGSM examples made against the final model only "
        f"(the attacker does not know the earlier stages); weights {s['weights']}. (vote): every stage model "
        "votes; (defer): a stage model votes only when the final model's answer is one of its classes; "
        "(soft): the zero-padded softmax outputs averaged with the weights.",
        "w/o MI and baseline: white-box FGSM against the model itself.",
    ]
    (out / "table3.md").write_text(report.table3_markdown(
        result["adversarial"], f"Adversarial accuracy (%) vs ε — {result.get('name') or result['run']}", notes))
    plots.plot_robustness({k: v["rows"] for k, v in result["noise"].items()}, "sigma",
                          "σ of Gaussian noise (normalised input units)", "Noise robustness", out / "fig4_noise.png")
    abl = {k: v["rows"] for k, v in result["ablation"].items() if "rows" in v}
    if abl:
        plots.plot_robustness(abl, "fraction", "fraction of conv units ablated", "Ablation robustness",
                              out / "fig4_ablation.png")
    cols = {"mi": f"{MI} (vote)", "mi_defer": f"{MI} (defer)", "mi_soft": f"{MI} (soft)", "final": "grown (w/o MI)",
            "baseline": BASELINE}
    plots.plot_adversarial(result["adversarial"], cols, out / "table3_fgsm.png")
    labels = {"mi": "grown w/ MI (vote, MI rule)", "mi_defer": "grown w/ MI (defer, MI rule)",
              "mi_soft": "grown w/ MI (soft vote, its mean softmax)",
              "final": "grown w/o MI (standard rule)", "baseline": f"{BASELINE} (standard rule)"}
    for set_name, d in result["detection"].items():
        title = "No-decision detection, clean test set" if set_name == "clean" else \
            f"No-decision detection, FGSM ε = {s['detect_eps']:g}"
        plots.plot_detection({labels[m]: v["curve"] for m, v in d.items()}, title, out / f"fig6_{set_name}.png")
