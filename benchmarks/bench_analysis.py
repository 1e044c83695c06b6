"""Robustness analysis of a cumulative run against a scratch run (Feng & Panda, Table 3 and Figs. 4-6).

Usage::

    python benchmarks/bench_analysis.py RUN_DIR --baseline SCRATCH_RUN_DIR [--max-samples N] [--quick]

Runs ``netgrow.analysis.analyze_run`` (outputs in RUN_DIR/analysis), then prints the Table 3 analogue
(adversarial accuracy vs ε: grown w/ MI (vote and defer variants), grown w/o MI, scratch), the area under the noise and ablation
curves (trapezoid; also divided by the x-range = mean accuracy over the sweep) and TNR at FNR = 5 % with
and without MI on the clean and the adversarial test set. Writes benchmarks/results/bench_analysis.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from netgrow.analysis.run_analysis import BASELINE, GROWN, analyze_run

RESULTS = Path(__file__).resolve().parent / "results" / "bench_analysis.json"


def _pct(v: Any) -> str:
    return "   –  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's figures, pulled out of an analyze_run result."""
    areas = {}
    for study in ("noise", "ablation"):
        for label, v in res[study].items():
            if "area" in v:
                areas[f"{study}/{label}"] = {"area": v["area"], "normalized_area": v["normalized_area"]}
    tnr = {f"{s}/{m}": d["tnr_at_fnr"] for s, ms in res["detection"].items() for m, d in ms.items()}
    return {"table3": res["adversarial"], "areas": areas, "tnr_at_fnr": tnr,
            "fnr_target": res["settings"]["fnr_target"],
            "clean": {k: res["clean"][k] for k in ("mi", "mi_defer", "final", "baseline")}}


def print_report(summary: dict[str, Any], res: dict[str, Any]) -> None:
    print(f"\nrun {res['run']}  baseline {res['baseline']}  ({res['data']['test_samples']} test samples of "
          f"{res['data']['name']}, weights {res['settings']['weights']})")
    print("\nTable 3 analogue: FGSM accuracy (%) vs ε (MI: examples against the final model only)")
    print("   ε     | w/ MI vote | w/ MI defer | w/o MI | scratch")
    for r in summary["table3"]:
        print(f"  {r['eps']:<7g}|   {_pct(r['mi'])}   |   {_pct(r['mi_defer'])}    | {_pct(r['final'])} | "
              f"{_pct(r.get('baseline'))}")
    print("\nArea under the curve (trapezoid; normalised = mean accuracy over the sweep)")
    for key, a in summary["areas"].items():
        print(f"  {key:<34} {a['area']:8.4f}   normalised {a['normalized_area']:.4f}")
    print(f"\nTNR at FNR <= {100 * summary['fnr_target']:g} %")
    for key, v in summary["tnr_at_fnr"].items():
        print(f"  {key:<34} {_pct(v)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--max-samples", type=int, default=None, help="seeded subset of the test set")
    ap.add_argument("--quick", action="store_true", help="2 draws/trials and fewer levels (a smoke run)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if args.quick:
        kwargs = dict(sigmas=[0.0, 0.5, 1.0, 2.0], fractions=[0.0, 0.25, 0.5, 0.75], draws=2, trials=2)
    t0 = time.perf_counter()
    res = analyze_run(args.run_dir, baseline=args.baseline, max_samples=args.max_samples, **kwargs)
    wall = time.perf_counter() - t0
    summary = summarize(res)
    print_report(summary, res)
    print(f"\nanalysis wall time {wall:.1f} s; outputs in {Path(args.run_dir) / 'analysis'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "bench_analysis", "run": res["run"], "baseline": res["baseline"], **summary,
              "settings": res["settings"], "wall_time_s": wall,
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "platform": platform.platform(), "threads": torch.get_num_threads(),
                          "cuda": torch.cuda.is_available()},
              "labels": {"grown": GROWN, "baseline": BASELINE}}
    out.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
