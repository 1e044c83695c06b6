"""Extend the last-stage budgets of a finished ``bench_frontier.py`` seed without rerunning it.

A stable run (scratch's, or the last cumulative stage's) is a chain of segments, each saved by the Trainer
(model and optimizer state). For each new point ``s+d`` this script reloads the saved stable segment that
ends at ``s`` or the longest one before it (``Trainer(resume=True)`` returns a finished stage exactly as
it ended), continues it at the stable rate to ``s`` if needed and branches a decay of ``d`` epochs —
the points the frontier benchmark would have produced with longer budget lists. Writes ``benchmarks/results/frontier_extend.json`` (merged by tables.py).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_frontier_extend.py --runs runs/frontier --seeds 0,1 --points 4+1
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import torch

import _common as c
import bench_frontier as bf

NAME = "frontier_extend"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, help="the --out directory of bench_frontier.py")
    p.add_argument("--seeds", default="0,", help="seeds as a comma list ('0,' = seed 0; '0,1')")
    p.add_argument("--method", default="cumulative", choices=("cumulative", "scratch"))
    p.add_argument("--points", default="4+1", help="new stable+decay points (default 4+1)")
    p.add_argument("--frontier", default=str(c.RESULTS / "frontier.json"), help="the frontier result to extend")
    p.add_argument("--result", default=str(c.RESULTS / f"{NAME}.json"))
    args = p.parse_args()
    base = json.loads(Path(args.frontier).read_text())
    fargs = argparse.Namespace(**base["args"])
    from netgrow import models
    from netgrow.data import load
    from netgrow.train import Trainer

    train, test = load("fashion_mnist")
    if base.get("quick"):
        from netgrow.strategies.base import limit

        train, test = limit(train, 2000, 0), limit(test, 1000, 1)
    result_path = Path(args.result)
    doc = json.loads(result_path.read_text()) if result_path.is_file() else {"benchmark": NAME, "per_seed": {}}
    for seed in c.seeds(args.seeds):
        root = Path(args.runs) / f"s{seed}"
        segs = sorted(root.iterdir())
        prefix = "scratch" if args.method == "scratch" else "cum2-vgg19"
        pat = re.compile(rf"^(\d+)-{prefix}-stable(\d+)$")
        stable = {int(m.group(2)): (d, int(m.group(1))) for d in segs if (m := pat.match(d.name))}
        run = bf.Runner(root, seed, fargs)
        run.count = len(segs)
        k = [10] if args.method == "scratch" else [5, 7, 10]
        data = bf.datasets(train, test, seed, k, fargs.val_fraction)[-1]
        points = doc["per_seed"].setdefault(str(seed), {}).setdefault(args.method, [])

        def segment_M(d: Path) -> int:
            return int(json.loads(next((d / "stages").glob("stage*.json")).read_text())["meter"]["M"])

        for b, d in bf.budgets(args.points):
            start = max(s for s in stable if s <= b)  # the saved stable segment to continue from
            seg_dir, index = stable[start]
            torch.manual_seed(0)
            model = models.create("vgg19", num_classes=10, width=base["width"], in_channels=1, input_size=28)
            cfg = run.base.replace(epochs=1, plateau_patience=10**6)
            res = Trainer(seg_dir, cfg, quiet=True, resume=True).run_stage(
                index, seg_dir.name.split("-", 1)[1], model, data["train"], None, val_set=data["val"])
            assert res.resumed, f"{seg_dir} holds no finished stage"
            # M before: the earlier stages (cumulative) and every stable segment up to `start`
            m_prefix = sum(segment_M(sd) for s_b, (sd, _) in stable.items() if s_b <= start)
            if args.method == "cumulative":
                m_prefix += sum(segment_M(sd) for sd in segs if re.search(r"-cum[01]-", sd.name))
            model, carry = res.model, (res.model, res.optimizer_state, None)
            if b > start:
                seg = run.segment(f"{prefix}-stable{b}", model, data, b - start, "middle", carry, report=False)
                model, carry = seg["result"].model, (seg["result"].model, seg["result"].optimizer_state, None)
                m_prefix += seg["out"]["M"]
                stable[b] = (root / f"{run.count:02d}-{prefix}-stable{b}", run.count)
            dec = run.segment(f"{prefix}-decay{b}+{d}", copy.deepcopy(model), data, d, "last", carry, decay_epochs=d)
            points.append({"stable": b, "decay": d, "M": m_prefix + dec["out"]["M"], "test_acc": dec["out"]["test_acc"],
                           "val_acc": dec["out"]["val_acc"], "curve": dec["out"]["curve"]})
        doc.update({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": c.machine(), "runs_dir": str(args.runs)})
        result_path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {result_path} (seed {seed})", flush=True)


if __name__ == "__main__":
    main()
