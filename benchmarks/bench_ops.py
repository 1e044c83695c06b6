"""Benchmark: widen (x1.5, every hidden group) and deepen on a CIFAR-size VGG19-BN vs ``copy.deepcopy``.

An op that returns a new model must at least copy the old one, so ``copy.deepcopy`` of the same model
is the floor. Goals: widen <= 1.5x the deepcopy time, peak memory <= 2.5x the model's bytes.

    .venv/bin/python benchmarks/bench_ops.py            # prints a table, writes benchmarks/results/bench_ops.json

Times are medians over ``--repeats`` runs in one process (after one warm-up run, which pays torch's
one-off lazy imports). Peak memory is the largest resident-set growth over the op, measured in a fresh
child process per op by sampling /proc/self/statm every 0.2 ms (tensor memory does not pass through
Python's allocator, so tracemalloc cannot see it). Note: the widened model itself is ~2.25x the bytes
of the original (conv weights grow by 1.5 x 1.5), so "peak / model bytes" includes the result; the
table also scales the deepcopy floor to each op's output bytes ("x per out byte", "x output").
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_ops.json"
CFG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def build_vgg19(width: float = 1.0) -> nn.Module:
    """netgrow's VGG19 if the models package provides it, else the same network built inline."""
    try:
        from netgrow.models import create

        return create("vgg19", width=width).eval()
    except Exception:  # models package absent or different: build the classic CIFAR VGG19-BN
        layers: list[nn.Module] = []
        c = 3
        for v in CFG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = max(1, round(int(v) * width))
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                c = out
        return nn.Sequential(nn.Sequential(*layers), nn.Flatten(), nn.Linear(c, 10)).eval()


def model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def last_conv(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1]


def ops(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    from netgrow.ops.widen import widen

    table: dict[str, Callable[[], Any]] = {
        "deepcopy": lambda: copy.deepcopy(model),
        "widen x1.5 (verify=False)": lambda: widen(model, 1.5, x, seed=0, verify=False),
        "widen x1.5 (verify=True)": lambda: widen(model, 1.5, x, seed=0, verify=True),
    }
    try:
        from netgrow.ops.deepen import deepen
    except ImportError:
        return table
    after = last_conv(model)
    table["deepen (verify=False)"] = lambda: deepen(model, after, x, verify=False)
    table["deepen (verify=True)"] = lambda: deepen(model, after, x, verify=True)
    return table


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_peak(fn: Callable[[], Any]) -> int:
    """Largest RSS growth while ``fn`` runs (the result is kept alive until the end, as a caller would)."""
    base = rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = fn()
    after_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stop.set()
    t.join()
    peak[0] = max(peak[0], rss())
    if after_max > before_max:  # the kernel's own peak counter saw a new high: it is exact
        peak[0] = max(peak[0], after_max)
    del result
    return peak[0] - base


def child(name: str, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    for fn in ops(build_vgg19(width=0.125), x).values():  # one-off lazy imports, outside the measurement
        fn()
    model = build_vgg19()
    print(json.dumps({"peak": measure_peak(ops(model, x)[name])}))


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (deepcopy uses one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, x = build_vgg19(), torch.randn(1, 3, 32, 32)
    mbytes = model_bytes(model)
    table = ops(model, x)
    rows = []
    for name, fn in table.items():
        seconds = median_time(fn, args.repeats)
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak"]
        rows.append({"op": name, "seconds": seconds, "peak_bytes": peak})
    floor = rows[0]["seconds"]
    wide = table["widen x1.5 (verify=False)"]()
    for r in rows:
        out_bytes = model_bytes(table[r["op"]]())
        r["output_bytes"] = out_bytes
        r["time_vs_deepcopy"] = r["seconds"] / floor
        # the floor scaled to the bytes this op must write: deepcopy time per byte x output bytes
        r["time_vs_deepcopy_per_output_byte"] = r["seconds"] / (floor * out_bytes / mbytes)
        r["peak_vs_model_bytes"] = r["peak_bytes"] / mbytes
        r["peak_vs_output_bytes"] = r["peak_bytes"] / out_bytes
    result = {
        "model": "vgg19 (CIFAR, BatchNorm)",
        "params": sum(p.numel() for p in model.parameters()),
        "model_bytes": mbytes,
        "widened_model_bytes": model_bytes(wide),
        "example_input": list(x.shape),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "repeats": args.repeats,
        "goals": {"widen_time_vs_deepcopy": 1.5, "peak_vs_model_bytes": 2.5},
        "rows": rows,
    }
    print(f"VGG19-BN: {result['params'] / 1e6:.1f}M params, {mbytes / 2**20:.1f} MiB "
          f"(widened: {result['widened_model_bytes'] / 2**20:.1f} MiB); torch {torch.__version__}, "
          f"{args.threads} thread(s), median of {args.repeats}")  # fmt: skip
    head = ("op", "time [ms]", "x deepcopy", "x per out byte", "peak [MiB]", "x model", "x output")
    print(f"{head[0]:28s} " + " ".join(f"{h:>14s}" for h in head[1:]))
    for r in rows:
        cells = (
            f"{r['seconds'] * 1e3:.1f}",
            f"{r['time_vs_deepcopy']:.2f}",
            f"{r['time_vs_deepcopy_per_output_byte']:.2f}",
            f"{r['peak_bytes'] / 2**20:.1f}",
            f"{r['peak_vs_model_bytes']:.2f}",
            f"{r['peak_vs_output_bytes']:.2f}",
        )
        print(f"{r['op']:28s} " + " ".join(f"{c:>14s}" for c in cells))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
