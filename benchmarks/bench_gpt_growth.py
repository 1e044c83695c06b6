"""Growing a character-level GPT on the fortunes corpus: scratch vs growth in depth, width and both.

Target model: ``create("gpt", n_layer=4, n_embd=128, n_head=4, d_ff=512, block_size=64)`` (head_dim 32).
Variants (all end as exactly that model):

- ``scratch``      the target from the start;
- ``depth_copy``   2 blocks -> 4 by zero-output copies (exact);
- ``depth_stack``  2 blocks -> 4 by stacking ([b0, b1, b0, b1], G_stack; not function-preserving);
- ``width``        d_model 64 -> 128, heads 2 -> 4 (head_dim 32), FFN 256 -> 512, exact, with the
                   function-preserving symmetry-breaking noise (``noise`` = 0.1 of each weight's std);
- ``both``         2 blocks, d_model 64 -> 4 blocks, 128 (width first, then depth copies);
- ``small_scratch`` (control, not run by default): the 2-block model for the whole budget, never grown,
                   which separates "growth helps" from "a smaller model is better at this budget".

Protocol (one seed = one model init, one growth noise draw, one batch order shared by every variant):
AdamW (lr 2e-3, betas 0.9/0.99, weight decay 0.1 on matrices only, the optimizer state carried through
the growth's ParamMap), batches of 32 random windows of 64 characters, a warmup-stable-decay schedule:
linear warmup over the first 5 % of scratch's steps, then a constant lr. Growth happens at half of
scratch's step count. Every run has the compute budget B of scratch (forward MACs of training,
``samples x count_macs``, the cumulative paper's Eq. 1); a grown run spends less per step in its small
phase, so it takes more steps. WSD gives the loss at several budgets from one run: at each budget
f·B (f = 0.6, 0.8, 1.0) a decay branch forks off the stable phase at 0.8·f·B and decays the lr linearly
to 0 over the last 20 % of that budget, ending exactly at f·B, where the full validation split is
evaluated. Reported per variant (3 seeds, mean ± std):

- the validation loss (nats/char, and bits per character) at f = 0.6, 0.8, 1.0, and the gap to scratch's
  loss at the same MACs (same seed);
- MACs to reach scratch's final (f = 1.0) validation loss, as a fraction of scratch's: the grown run's
  loss-vs-MACs points linearly interpolated; "<= 0.6" when the 0.6 point already beats it, "> 1.0" when
  even the full budget does not.

Writes ``benchmarks/results/gpt_growth.json`` after every run (partial results survive an interrupted run)
and prints a table; ``benchmarks/gpt_growth_table.py`` turns the JSON into BENCHMARKS.md's section.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_gpt_growth.py --seeds 3 --steps 480
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_gpt_growth.py --quick   # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import netgrow
from netgrow.data import load
from netgrow.models import create, grow
from netgrow.ops.param_map import param_map
from netgrow.train.carry import carry_optimizer_state
from netgrow.train.macs import count_macs

import _common as c  # benchmarks/_common.py, beside this script

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpt_growth.json"

TARGET = {"n_layer": 4, "n_embd": 128, "n_head": 4, "d_ff": 512}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "scratch": None,
    "depth_copy": {"small": {"n_layer": 2}, "depth": "copy", "noise": 0.0},
    "depth_stack": {"small": {"n_layer": 2}, "depth": "stack", "noise": 0.0},
    "width": {"small": {"n_embd": 64, "n_head": 2, "d_ff": 256}, "depth": "copy", "noise": 0.1},
    "both": {"small": {"n_layer": 2, "n_embd": 64, "n_head": 2, "d_ff": 256}, "depth": "copy", "noise": 0.1},
    # control: the depth variants' small model trained for the whole budget, never grown
    "small_scratch": {"small": {"n_layer": 2}, "grow": False},
}
DEFAULT_VARIANTS = "scratch,depth_copy,depth_stack,width,both"
FRACTIONS = (0.6, 0.8, 1.0)  # budgets at which a decay branch ends, as fractions of scratch's MACs
DECAY = 0.2  # the decay phase: this fraction of each budget
WARMUP = 0.05  # of scratch's steps
GROW_AT = 0.5  # of scratch's steps


def optimizer(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    named = list(model.named_parameters())
    decay = [(n, p) for n, p in named if p.dim() >= 2]
    rest = [(n, p) for n, p in named if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def batch(train: Any, seed: int, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of global step ``step``: the same for every variant of a seed (and for its branches)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(0, len(train), (size,), generator=gen)
    x, y = train.tensors
    return x[idx], y[idx]


@torch.no_grad()
def val_loss(model: torch.nn.Module, val: Any, bs: int = 128) -> float:
    model.eval()
    x, y = val.tensors
    total = 0.0
    for i in range(0, len(x), bs):
        out = model(x[i : i + bs])
        total += float(F.cross_entropy(out.flatten(0, 1), y[i : i + bs].flatten(), reduction="sum"))
    model.train()
    return total / y.numel()


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, lr: float, xb: torch.Tensor, yb: torch.Tensor) -> float:
    for g in opt.param_groups:
        g["lr"] = lr
    loss = F.cross_entropy(model(xb).flatten(0, 1), yb.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def run_variant(name: str, spec: dict[str, Any] | None, seed: int, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    train, val, vocab = data
    base = {"vocab_size": vocab, "block_size": args.block, **TARGET}
    probe = torch.zeros(1, args.block, dtype=torch.long)
    macs_big = int(count_macs(create("gpt", **base), probe))
    budget = args.steps * args.batch * macs_big  # scratch's forward MACs of training (Eq. 1)
    torch.manual_seed(seed)
    model = create("gpt", **{**base, **(spec["small"] if spec else {})})
    macs = int(count_macs(model, probe))
    opt = optimizer(model, args.lr)
    warmup = max(1, round(WARMUP * args.steps))
    grow_at = round(GROW_AT * args.steps) if spec and spec.get("grow", True) else None
    forks = {f: (1 - DECAY) * f * budget for f in FRACTIONS}
    points: dict[float, dict[str, Any]] = {}
    spent, step, t0 = 0, 0, time.perf_counter()
    log_every = max(1, args.steps // 8)
    record: dict[str, Any] = {"variant": name, "seed": seed, "macs_per_seq_small": macs, "macs_per_seq": macs_big,
                              "budget_M": budget, "load_start": os.getloadavg()[0]}  # fmt: skip
    while len(points) < len(FRACTIONS):
        if grow_at is not None and step == grow_at:
            old, old_opt = model, opt
            xg = batch(train, seed, step, 2)[0]
            model = grow(old, {**TARGET}, example_input=xg, depth=spec["depth"], noise=spec["noise"], seed=seed)
            opt = optimizer(model, args.lr)
            carried = carry_optimizer_state(old_opt, old, opt, model, param_map(model))
            macs = int(count_macs(model, probe))
            record.update(grown_at_step=step, grown_at_M=spent, carried_params=carried,
                          growth_record=netgrow.spec.growth_log(model)[-1])
        for f, fork_at in forks.items():
            if f not in points and spent >= fork_at:
                points[f] = branch(model, opt, train, val, seed, step, spent, f * budget, macs, args)
                print(f"  [{name} seed {seed}] f={f}: val {points[f]['val_loss']:.4f} at "
                      f"{points[f]['M'] / budget:.3f} B ({time.perf_counter() - t0:.0f} s)", flush=True)
        if len(points) == len(FRACTIONS):
            break
        lr = args.lr * min(1.0, (step + 1) / warmup)
        loss = train_step(model, opt, lr, *batch(train, seed, step, args.batch))
        if not math.isfinite(loss):
            raise RuntimeError(f"{name} seed {seed}: loss {loss} at step {step}")
        spent += args.batch * macs
        step += 1
        if step % log_every == 0:
            print(f"  [{name} seed {seed}] step {step} loss {loss:.3f} M {spent / budget:.2f} B", flush=True)
    record.update(points={str(f): p for f, p in points.items()}, wall_time=time.perf_counter() - t0,
                  load_end=os.getloadavg()[0], params=sum(p.numel() for p in model.parameters()),
                  final_config=model.config.to_dict())  # fmt: skip
    return record


def branch(model: Any, opt: Any, train: Any, val: Any, seed: int, step: int, spent: int, end_M: float,
           macs: int, args: argparse.Namespace) -> dict[str, Any]:
    """Decay the lr linearly to 0 from ``step`` until ``end_M`` MACs, on copies; return the val loss there."""
    m = copy.deepcopy(model)
    o = optimizer(m, args.lr)
    o.load_state_dict(opt.state_dict())
    n = max(1, round((end_M - spent) / (args.batch * macs)))
    for i in range(n):
        train_step(m, o, args.lr * (1 - (i + 1) / n), *batch(train, seed, step + i, args.batch))
    loss = val_loss(m, val)
    return {"M": spent + n * args.batch * macs, "steps": step + n, "decay_steps": n, "val_loss": loss,
            "val_bpc": loss / math.log(2)}  # fmt: skip


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "cpus": os.cpu_count(), "threads": torch.get_num_threads()}  # fmt: skip


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: losses at each budget, gaps to scratch (paired by seed), MACs to scratch's final loss."""
    scratch = {r["seed"]: r for r in runs if r["variant"] == "scratch"}
    out: dict[str, Any] = {}
    for name in VARIANTS:
        rs = [r for r in runs if r["variant"] == name]
        if not rs:
            continue
        row: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        for f in FRACTIONS:
            key = str(f)
            losses = [r["points"][key]["val_loss"] for r in rs]
            row[f"val_loss@{key}"] = _ms(losses)
            gaps = [r["points"][key]["val_loss"] - scratch[r["seed"]]["points"][key]["val_loss"]
                    for r in rs if r["seed"] in scratch]  # fmt: skip
            row[f"gap@{key}"] = _ms(gaps)
        fracs = [_macs_to_target(r, scratch[r["seed"]]) for r in rs if r["seed"] in scratch]
        row["macs_to_target"] = fracs
        numeric = [v for v in fracs if isinstance(v, float)]
        row["macs_to_target_ms"] = _ms(numeric) if len(numeric) == len(fracs) and numeric else None
        row["wall_time"] = _ms([r["wall_time"] for r in rs])
        out[name] = row
    return out


def _macs_to_target(run: dict[str, Any], scratch: dict[str, Any]) -> float | str:
    target = scratch["points"]["1.0"]["val_loss"]
    b = scratch["budget_M"]
    pts = sorted((p["M"] / b, p["val_loss"]) for p in run["points"].values())
    if pts[0][1] <= target:
        return f"<= {pts[0][0]:.2f}"
    for (f0, l0), (f1, l1) in zip(pts, pts[1:]):
        if l1 <= target:
            return float(f0 + (f1 - f0) * (l0 - target) / (l0 - l1))
    return f"> {pts[-1][0]:.2f}"


def _ms(values: list[float]) -> list[float] | None:
    """[mean, std] as the JSON stores it (None for no values)."""
    return list(c.mean_std(values)) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="3", help="a count N (seeds 0..N-1) or a comma-separated list")
    p.add_argument("--steps", type=int, default=480, help="scratch's optimizer steps (defines the budget B)")
    p.add_argument("--batch", type=int, default=32, help="sequences per step")
    p.add_argument("--block", type=int, default=64, help="context length in characters")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--append", action="store_true", help="add these runs to the existing results JSON")
    p.add_argument("--quick", action="store_true", help="smoke run: 40 steps, one seed, a small val split")
    p.add_argument("--out", default=str(RESULTS), help="results JSON path")
    p.add_argument("--note", default="", help="free text recorded in the JSON (e.g. what else ran)")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = [0] if args.quick else c.seeds(args.seeds)
    if args.quick:
        args.steps = 40
    train, val, _ = load("fortunes", block_size=args.block, validation=True)
    if args.quick:
        val.tensors = tuple(t[:64] for t in val.tensors)
    data = (train, val, train.vocab_size)
    print(f"fortunes: {len(train)} train windows, {len(val)} val windows of {args.block}; vocab {train.vocab_size}",
          flush=True)  # fmt: skip
    out = Path(args.out)
    previous = json.loads(out.read_text()) if args.append and out.is_file() else None
    payload: dict[str, Any] = {"machine": machine(), "args": vars(args), "target": TARGET, "variants": VARIANTS,
                               "fractions": FRACTIONS, "decay": DECAY, "warmup": WARMUP, "grow_at": GROW_AT,
                               "val_windows": len(val), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "runs": []}  # fmt: skip
    if previous is not None:  # keep the earlier runs and their settings; record what was added
        for key in ("steps", "batch", "block", "lr"):
            if previous["args"][key] != getattr(args, key):
                sys.exit(f"--append: --{key} {getattr(args, key)} differs from the results' {previous['args'][key]}")
        payload = {**previous, "appended": [*previous.get("appended", []), vars(args)]}
    for seed in seeds:
        for name in args.variants.split(","):
            print(f"[{name} seed {seed}]", flush=True)
            payload["runs"].append(run_variant(name, VARIANTS[name], seed, args, data))
            payload["summary"] = summarize(payload["runs"])
            payload["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(payload, indent=1))
            tmp.replace(out)
    for name, row in payload["summary"].items():
        print(name, {k: v for k, v in row.items() if k != "seeds"})


if __name__ == "__main__":
    main()
