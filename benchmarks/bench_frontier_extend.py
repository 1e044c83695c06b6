"""Extend the last-stage budgets of a finished ``bench_frontier.py`` seed without rerunning it.

The last cumulative stage's stable run is a chain of segments, each saved by the Trainer (model and
optimizer state). This script reloads the longest stable segment of each seed (``Trainer(resume=True)``
returns a finished stage exactly as it ended), continues it at the stable rate to each new ``s`` and
branches a decay of ``d`` epochs there — the same points the frontier benchmark would have produced with
a longer ``--last-budgets``. Writes ``benchmarks/results/frontier_extend.json`` (merged by tables.py).

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
    p.add_argument("--points", default="4+1", help="new stable+decay points of the last stage (default 4+1)")
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
        stable = [d for d in segs if re.search(r"-cum2-vgg19-stable(\d+)$", d.name)]
        last = max(stable, key=lambda d: int(re.search(r"stable(\d+)$", d.name).group(1)))
        done_b = int(re.search(r"stable(\d+)$", last.name).group(1))
        index = int(last.name.split("-")[0])
        run = bf.Runner(root, seed, fargs)
        run.count = len(segs)
        data = bf.datasets(train, test, seed, [5, 7, 10], fargs.val_fraction)[2]
        torch.manual_seed(0)
        model = models.create("vgg19", num_classes=10, width=base["width"], in_channels=1, input_size=28)
        cfg = run.base.replace(epochs=done_b, plateau_patience=10**6)
        res = Trainer(last, cfg, quiet=True, resume=True).run_stage(index, last.name.split("-", 1)[1], model,
                                                                      data["train"], None, val_set=data["val"])
        assert res.resumed, f"{last} holds no finished stage"
        # M spent before the new segments: stages 0, 1 and every stable segment of the last stage
        m_prefix = sum(json.loads(next((d / "stages").glob("stage*.json")).read_text())["meter"]["M"]
                       for d in segs if "decay" not in d.name and "scratch" not in d.name)
        model, carry = res.model, (res.model, res.optimizer_state, None)
        points = doc["per_seed"].setdefault(str(seed), [])
        for b, d in bf.budgets(args.points):
            if b > done_b:
                seg = run.segment(f"cum2-vgg19-stable{b}", model, data, b - done_b, "middle", carry, report=False)
                model, carry = seg["result"].model, (seg["result"].model, seg["result"].optimizer_state, None)
                m_prefix += seg["out"]["M"]
                done_b = b
            dec = run.segment(f"cum2-vgg19-decay{b}+{d}", copy.deepcopy(model), data, d, "last", carry, decay_epochs=d)
            points.append({"stable": b, "decay": d, "M": m_prefix + dec["out"]["M"], "test_acc": dec["out"]["test_acc"],
                           "val_acc": dec["out"]["val_acc"], "curve": dec["out"]["curve"]})
        doc.update({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": c.machine(), "runs_dir": str(args.runs)})
        result_path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {result_path} (seed {seed})", flush=True)


if __name__ == "__main__":
    main()
