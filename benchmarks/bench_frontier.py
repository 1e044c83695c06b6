"""Compute-accuracy frontier: cumulative VGG11 -> VGG16 -> VGG19 (5 -> 7 -> 10 Fashion-MNIST classes) vs
scratch VGG19, several budgets x several seeds, one warmup-stable-decay (WSD) schedule.

Protocol (issue 9; Feng & Panda Table 1 read as "stages to saturation, the baseline's epochs spread over
the stages"):

- 10 % of the training set is a stratified validation split (``netgrow.data.split``); every decision
  (the plateau that ends a stage) reads it; the test set is evaluated for the report only.
- One schedule across the stages (``cross_stage = true``): a warm-up at the start of stage 0, the
  stable rate carried through both growth steps (optimizer state carried by the ParamMap), the decay
  only in the last stage. Stages 0 and 1 run until the validation accuracy plateaus (patience P epochs),
  capped at the paper's proportions of scratch's longest budget (28 / 9 of a 46-epoch baseline, i.e.
  ~0.6x and ~0.2x of scratch's 9 epochs: 5 and 2).
- Budgets of the last stage: a stable segment of b epochs then a decay of d epochs. The decay branches all
  start from the same stable run (a WSD budget E differs from a longer one only by where the decay
  starts), so one stable run gives every budget; the same for scratch.
- A budget point = the test accuracy after its decay and the M (Eq. 1, training MACs) spent to get it:
  the stable prefix plus that branch's decay (not the other branches).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_frontier.py            # 3 seeds
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_frontier.py --quick    # smoke run

Writes ``benchmarks/results/frontier.json`` after every seed (tables: ``benchmarks/tables.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

import _common as c

NAME = "frontier"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="3")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up epochs (default 0.5)")
    p.add_argument("--patience", type=int, default=2, help="validation plateau patience of stages 0, 1")
    p.add_argument("--caps", default="5,2", help="epoch caps of the cumulative stages before the last (default 5,2)")
    p.add_argument("--schedule", default="5,7,10", help="classes per cumulative stage (default 5,7,10)")
    p.add_argument("--archs", default="vgg11,vgg16,vgg19", help="architecture per stage (default vgg11,vgg16,vgg19)")
    p.add_argument("--no-scratch", action="store_true",
                   help="cumulative only (the stage-count study reuses frontier.json's scratch runs: same seeds, "
                        "same split)")
    p.add_argument("--scratch-budgets", default="2+1,4+1,7+2",
                   help="stable+decay epochs of scratch's budget points (default 2+1,4+1,7+2)")
    p.add_argument("--last-budgets", default="1+1,2+1",
                   help="stable+decay epochs of the last cumulative stage (default 1+1,2+1)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--quick", action="store_true", help="smoke run: 2000 images, width 1/16, one seed")
    p.add_argument("--out", help="runs directory (default benchmarks/runs/frontier-<time>)")
    p.add_argument("--result", default=None, help="result JSON path (default benchmarks/results/frontier.json)")
    return p.parse_args()


def budgets(arg: str) -> list[tuple[int, int]]:
    out = []
    for item in arg.split(","):
        b, d = item.split("+")
        out.append((int(b), int(d)))
    return sorted(out)


class Runner:
    """Trains segments with the netgrow Trainer; every segment in its own run directory."""

    def __init__(self, root: Path, seed: int, args: argparse.Namespace):
        from netgrow.train import TrainConfig

        self.root, self.seed, self.args = root, seed, args
        self.base = TrainConfig(optimizer="sgd", lr=args.lr, momentum=0.9, weight_decay=5e-4, schedule="wsd",
                                cross_stage=True, warmup_epochs=args.warmup, batch_size=128, seed=seed,
                                plateau_patience=args.patience, plateau_min_delta=0.001, epochs=1)
        self.count = 0

    def segment(self, label: str, model: torch.nn.Module, data: dict[str, Any], epochs: int, role: str,
                carry: tuple[Any, ...] | None, decay_epochs: float = 1.0, plateau: bool = False,
                report: bool = True) -> dict[str, Any]:
        from netgrow.train import Trainer

        cfg = self.base.replace(epochs=epochs, decay_epochs=decay_epochs,
                                plateau_patience=self.args.patience if plateau else 10**6)
        self.count += 1
        tr = Trainer(self.root / f"{self.count:02d}-{label}", cfg, quiet=True)
        t0 = time.perf_counter()
        test = data["test"] if report else None  # stable segments: validation only (the test set costs time)
        res = tr.run_stage(self.count, label, model, data["train"], test, val_set=data["val"],
                           carry_from=carry, schedule_role=role)
        last = res.history[-1]
        out = {"label": label, "epochs": len(res.history), "M": int(res.meter["M"]), "test_acc": last["test_acc"],
               "val_acc": last["val_acc"], "stopped_by": res.stopped_by, "wall": time.perf_counter() - t0,
               "curve": [{k: r[k] for k in ("epoch", "val_acc", "test_acc", "lr", "stage_M")} for r in res.history]}
        test_txt = "-" if out["test_acc"] is None else f"{100 * out['test_acc']:.2f}"
        print(f"[{NAME}] s{self.seed} {label}: {out['epochs']} ep, val {100 * out['val_acc']:.2f} "
              f"test {test_txt}, M {out['M']:.3e}, {out['wall']:.0f} s ({res.stopped_by})", flush=True)
        return {"out": out, "result": res}


def stable_with_branches(run: Runner, label: str, model: torch.nn.Module, data: dict[str, Any],
                         points: list[tuple[int, int]], role: str, carry: tuple[Any, ...] | None,
                         M_before: int) -> list[dict[str, Any]]:
    """Stable segments up to each point's b (chained, state carried), a decay branch of d epochs at each."""
    frontier = []
    done_b, M_stable = 0, 0
    for b, d in points:
        if b > done_b:
            seg = run.segment(f"{label}-stable{b}", model, data, b - done_b, role, carry, report=False)
            model, carry = seg["result"].model, (seg["result"].model, seg["result"].optimizer_state, None)
            role = "middle"  # one warm-up only
            M_stable += seg["out"]["M"]
            done_b = b
        branch = copy.deepcopy(model)
        dec = run.segment(f"{label}-decay{b}+{d}", branch, data, d, "last", carry, decay_epochs=d)
        frontier.append({"stable": b, "decay": d, "M": M_before + M_stable + dec["out"]["M"],
                         "test_acc": dec["out"]["test_acc"], "val_acc": dec["out"]["val_acc"],
                         "curve": dec["out"]["curve"]})
    return frontier


def datasets(train: Any, test: Any, seed: int, schedule: list[int], val_fraction: float) -> list[dict[str, Any]]:
    from netgrow.data import nested_subsets, split

    tr, val = split(train, val_fraction, seed=seed)
    subs = [nested_subsets(ds, schedule, seed=seed) for ds in (tr, val, test)]
    return [{"train": a, "val": b, "test": t} for a, b, t in zip(*subs)]


def one_seed(seed: int, train: Any, test: Any, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from netgrow import models, ops
    from netgrow.models.grow import grow
    from netgrow.strategies.base import Growth

    run = Runner(root / f"s{seed}", seed, args)
    shape = tuple(train[0][0].shape)
    x = torch.zeros(1, *shape)

    def create(arch: str, k: int) -> torch.nn.Module:
        torch.manual_seed(seed * 1000)
        return models.create(arch, num_classes=k, width=args.width, in_channels=shape[0], input_size=list(shape[1:]))

    # scratch VGG19 on all 10 classes: one stable run, decay branches
    scratch = []
    if not args.no_scratch:
        full = datasets(train, test, seed, [10], args.val_fraction)[0]
        scratch = stable_with_branches(run, "scratch", create("vgg19", 10), full, budgets(args.scratch_budgets),
                                       "first", None, 0)
    # cumulative: the stages before the last stable to the validation plateau (capped), the last stage with
    # decay branches
    schedule = [int(v) for v in args.schedule.split(",")]
    archs = args.archs.split(",")
    caps = [int(v) for v in args.caps.split(",")]
    if not (len(archs) == len(schedule) == len(caps) + 1):
        raise SystemExit(f"--schedule {args.schedule}, --archs {args.archs} and --caps {args.caps}: need one arch "
                         "per stage and one cap per stage before the last")
    last = len(schedule) - 1
    data = datasets(train, test, seed, schedule, args.val_fraction)
    stages = []
    model = create(archs[0], schedule[0])
    seg = run.segment(f"cum0-{archs[0]}", model, data[0], caps[0], "first", None, plateau=True)
    stages.append(seg["out"])
    M = seg["out"]["M"]
    carry = None
    for i in range(1, last + 1):
        prev = seg["result"].model
        gen = torch.Generator().manual_seed(seed + 17 * i)
        ds = data[i]["train"]
        idx = torch.randperm(len(ds), generator=gen)[:512]
        batches = list(torch.stack([ds[int(j)][0] for j in idx]).split(128))
        chain = Growth(prev)
        chain.apply(f"grow:{archs[i]}", grow, archs[i], x, data=batches)
        chain.apply(f"expand:{schedule[i]}", ops.expand_classes, schedule[i], x, seed=seed * 1000 + i)
        model = chain.result()
        carry = (prev, seg["result"].optimizer_state, chain.map)
        if i < last:
            seg = run.segment(f"cum{i}-{archs[i]}", model, data[i], caps[i], "middle", carry, plateau=True)
            stages.append(seg["out"])
            M += seg["out"]["M"]
    cumulative = stable_with_branches(run, f"cum{last}-{archs[last]}", model, data[last], budgets(args.last_budgets),
                                      "middle", carry, M)
    return {"seed": seed, "scratch": scratch, "cumulative": cumulative, "cumulative_stages": stages,
            "schedule": schedule, "archs": archs}


def main() -> None:
    args = parse()
    from netgrow.data import load

    if args.quick:
        args.seeds, args.width = "1", 0.0625
        args.caps = ",".join(["1"] * (len(args.schedule.split(",")) - 1))
        args.scratch_budgets, args.last_budgets = "1+1,2+1", "1+1"
    seeds = c.seeds(args.seeds)
    root = Path(args.out) if args.out else c.HERE / "runs" / f"{NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
    train, test = load("fashion_mnist")
    if args.quick:
        from netgrow.strategies.base import limit

        train, test = limit(train, 2000, 0), limit(test, 1000, 1)
    result = Path(args.result) if args.result else c.RESULTS / f"{NAME}{'-quick' if args.quick else ''}.json"
    per_seed = []
    for seed in seeds:
        per_seed.append(one_seed(seed, train, test, args, root))
        doc = {"benchmark": NAME, "quick": args.quick, "seeds": [r["seed"] for r in per_seed], "width": args.width,
               "args": vars(args), "runs_dir": str(root), "machine": c.machine(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "per_seed": per_seed}
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {result} ({len(per_seed)} seed(s))", flush=True)


if __name__ == "__main__":
    main()
