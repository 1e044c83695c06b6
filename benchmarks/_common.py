"""Shared plumbing of the strategy benchmarks: arguments, data loaded once, runs, tables, JSON results.

Every benchmark runs its experiments through ``netgrow.strategies.run_experiment`` (the same Trainer and
compute meter as ``netgrow run``), writes the run directories under ``benchmarks/runs/<name>-<time>/``,
prints a table and writes ``benchmarks/results/<name>.json`` with the machine and torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from netgrow.strategies.experiment import parse_config
from netgrow.strategies.resources import resolve_with_data
from netgrow.analysis.runs import Run, compute_to_target, load_run
from netgrow.strategies import run_experiment

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
QUICK = {"limit_train": 1000, "limit_test": 500, "epochs": 1, "width": 0.0625, "seeds": [0]}


def parser(description: str, epochs: int, width: float = 0.125) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seeds", default="3", help="a count N (seeds 0..N-1) or a comma-separated list ('4,' = seed 4); default 3")
    p.add_argument("--epochs", type=int, default=epochs, help=f"epoch budget per stage (default {epochs})")
    p.add_argument("--width", type=float, default=width, help=f"width multiplier (default {width})")
    p.add_argument("--data", default="fashion_mnist", help="data set name (default fashion_mnist)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1000 images, 1 epoch, width 1/16, one seed")
    p.add_argument("--out", help="directory for the runs (default benchmarks/runs/<name>-<time>)")
    return p


def seeds(arg: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"5,7"`` -> [5, 7]; ``"4,"`` -> [4]."""
    if "," not in arg:
        return list(range(int(arg)))
    return [int(s) for s in arg.split(",") if s.strip()]


class Bench:
    """One benchmark invocation: its arguments, the loaded data and the runs directory."""

    def __init__(self, name: str, args: argparse.Namespace):
        from netgrow.data import load

        self.name = name
        self.args = args
        self.quick = args.quick
        self.seeds = QUICK["seeds"] if args.quick else seeds(args.seeds)
        self.epochs = QUICK["epochs"] if args.quick else args.epochs
        self.width = QUICK["width"] if args.quick else args.width
        self.root = Path(args.out) if args.out else HERE / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        t0 = time.perf_counter()
        self.train, self.test = load(args.data)
        print(f"[{name}] {args.data}: {len(self.train)} train / {len(self.test)} test images "
              f"({time.perf_counter() - t0:.1f} s to load); runs in {self.root}", flush=True)

    def data_section(self, schedule: Sequence[int] | None = None, seed: int = 0) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.args.data, "seed": seed}
        if schedule:
            d["schedule"] = list(schedule)
        if self.quick:
            d.update(limit_train=QUICK["limit_train"], limit_test=QUICK["limit_test"])
        return d

    def run(self, label: str, raw: dict[str, Any]) -> Run:
        """Run one experiment config (a TOML-like dict) into ``<root>/<label>``; returns the loaded run."""
        raw = {"name": label, **raw}
        cfg = resolve_with_data(parse_config(raw, source=f"{self.name}:{label}"), self.train, self.test)
        out = self.root / label
        t0 = time.perf_counter()
        run_experiment(cfg.replace(out=str(out)), out, self.train, self.test, quiet=True)
        run = load_run(out)
        print(f"[{self.name}] {label}: acc {100 * run.summary['final']['test_acc']:.2f}%, "
              f"M {run.M_total:.3e}, {time.perf_counter() - t0:.0f} s", flush=True)
        return run


def train_section(epochs: int, **extra: Any) -> dict[str, Any]:
    """The demo's optimiser (SGD 0.05, momentum 0.9, wd 5e-4, cosine, batch 128) unless overridden."""
    return {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
            "batch_size": 128, "epochs": epochs, **extra}


def final_acc(run: Run) -> float:
    return float(run.summary["final"]["test_acc"])


def to_target(run: Run, target: float) -> dict[str, Any] | None:
    """First epoch scored on the run's final class count with accuracy >= target (M, wall time)."""
    return compute_to_target(run, target, classes=int(run.summary["final"]["classes"]))


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_ms(values: Sequence[float | None], scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    m, s = mean_std(values)
    if m is None:
        return "-"
    missing = sum(v is None for v in values)
    tail = f" ({missing} never)" if missing else ""
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}{suffix}{tail}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_result(name: str, bench: Bench, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if bench.quick else ''}.json"
    doc = {"benchmark": name, "quick": bench.quick, "seeds": bench.seeds, "epochs": bench.epochs,
           "width": bench.width, "data": bench.args.data, "runs_dir": str(bench.root), "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return path
