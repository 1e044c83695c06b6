"""Mutual inference and robustness over seeds (Feng & Panda, Table 3 and Fig. 4): ``netgrow.analysis`` on
several cumulative/scratch run pairs, reported as mean ± std over the seeds.

For every seed S the cumulative run ``RUNS/cumulative-sS`` is analysed against the scratch run
``RUNS/scratch-sS`` (both trained with a validation split: ``configs/demo_*.toml --set seed=S --set
data.seed=S``). The vote weights are the stages' *validation* accuracies (``weights="val_acc"``) and the
no-decision thresholds are chosen on the validation split, so nothing here is tuned on the test set.
Reported per seed and aggregated: clean accuracy and FGSM accuracy vs ε of the final model, the hard
majority vote, ``defer`` and the weighted soft vote, and scratch; the gain of each rule over the final
model; accuracy under Gaussian input noise (small σ ≤ 0.5 and large σ ≥ 1, normalised-input units) and
under ablation, grown vs scratch; TNR at FNR ≤ 5 % at the validation-chosen threshold.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_mi.py /work/runs/mi --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "mi_robustness"
RULES = ("final", "mi", "mi_defer", "mi_soft", "baseline")
SMALL_SIGMA, LARGE_SIGMA = 0.5, 1.0


def mean_std(values: list[float]) -> dict[str, float]:
    m, s = c.mean_std(values)
    return {"mean": m, "std": s}


def sigma_band(rows: list[dict[str, Any]], small: bool) -> float:
    """Mean accuracy over the noise levels of one band (σ = 0 excluded from the small band)."""
    pts = [r["mean"] for r in rows if (0 < r["sigma"] <= SMALL_SIGMA if small else r["sigma"] >= LARGE_SIGMA)]
    return statistics.fmean(pts)


def one_seed(res: dict[str, Any]) -> dict[str, Any]:
    """The figures of one analyze_run result."""
    from netgrow.analysis.run_analysis import BASELINE, GROWN

    noise = {who: res["noise"][key]["rows"] for who, key in (("grown", GROWN), ("baseline", BASELINE))}
    ablation = {who: res["ablation"][key].get("normalized_area") for who, key in (("grown", GROWN), ("baseline", BASELINE))}
    det = res["detection"]
    tnr = {f"{s}/{m}": (det[s][m].get("at_val_threshold") or {}).get("tnr") for s in det for m in det[s]}
    return {
        "clean": {k: res["clean"][k] for k in RULES},
        "fgsm": [{k: r.get(k) for k in ("eps",) + RULES} for r in res["adversarial"]],
        "noise": {who: [{"sigma": r["sigma"], "mean": r["mean"]} for r in rows] for who, rows in noise.items()},
        "noise_small": {who: sigma_band(rows, True) for who, rows in noise.items()},
        "noise_large": {who: sigma_band(rows, False) for who, rows in noise.items()},
        "ablation_mean": ablation,
        "tnr_at_val_threshold": tnr,
        "weights": res["settings"]["weights"],
    }


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of every figure, and each rule's gain over the final model (pp)."""
    out: dict[str, Any] = {"clean": {}, "clean_gain_pp": {}, "fgsm": [], "noise_small": {}, "noise_large": {},
                           "ablation_mean": {}}
    for k in RULES:
        out["clean"][k] = mean_std([s["clean"][k] for s in per_seed])
        out["clean_gain_pp"][k] = mean_std([100 * (s["clean"][k] - s["clean"]["final"]) for s in per_seed])
    for i, row in enumerate(per_seed[0]["fgsm"]):
        agg: dict[str, Any] = {"eps": row["eps"]}
        for k in RULES:
            agg[k] = mean_std([s["fgsm"][i][k] for s in per_seed])
            agg[f"{k}_gain_pp"] = mean_std([100 * (s["fgsm"][i][k] - s["fgsm"][i]["final"]) for s in per_seed])
        out["fgsm"].append(agg)
    for band in ("noise_small", "noise_large", "ablation_mean"):
        for who in ("grown", "baseline"):
            out[band][who] = mean_std([s[band][who] for s in per_seed])
        out[band]["grown_minus_baseline_pp"] = mean_std([100 * (s[band]["grown"] - s[band]["baseline"])
                                                         for s in per_seed])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", help="directory holding cumulative-sS and scratch-sS run directories")
    p.add_argument("--seeds", default="0,1,2", help="a count N (seeds 0..N-1) or a comma-separated list (default 0,1,2)")
    p.add_argument("--max-samples", type=int, default=None, help="seeded subset of the test set (default: all)")
    p.add_argument("--draws", type=int, default=5, help="noise draws / ablation trials per level (default 5)")
    p.add_argument("--result", default=str(c.RESULTS / f"{NAME}.json"))
    args = p.parse_args(argv)
    from netgrow.analysis.run_analysis import analyze_run

    root = Path(args.runs)
    seeds = c.seeds(args.seeds)
    per_seed = []
    for seed in seeds:
        t0 = time.perf_counter()
        res = analyze_run(root / f"cumulative-s{seed}", baseline=root / f"scratch-s{seed}", weights="val_acc",
                          max_samples=args.max_samples, draws=args.draws, trials=args.draws, quiet=True)
        row = {"seed": seed, **one_seed(res), "wall_s": time.perf_counter() - t0}
        per_seed.append(row)
        cl = row["clean"]
        print(f"[{NAME}] seed {seed}: clean final {100 * cl['final']:.2f} vote {100 * cl['mi']:.2f} defer "
              f"{100 * cl['mi_defer']:.2f} soft {100 * cl['mi_soft']:.2f} scratch {100 * cl['baseline']:.2f} "
              f"({row['wall_s']:.0f} s)", flush=True)
    doc = {"benchmark": NAME, "seeds": seeds, "runs_dir": str(root), "machine": c.machine(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "max_samples": args.max_samples, "draws": args.draws,
           "weights": "val_acc", "bands": {"small_sigma_max": SMALL_SIGMA, "large_sigma_min": LARGE_SIGMA},
           "per_seed": per_seed, "summary": aggregate(per_seed)}
    out = Path(args.result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
