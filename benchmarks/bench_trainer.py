"""Trainer throughput against a minimal hand-written PyTorch loop (goal: >= 0.95x the plain loop).

Same model (VGG11 at width 1/8, Fashion-MNIST-size 1x28x28 inputs, 10 classes), same initial weights,
same optimizer (SGD, momentum 0.9, weight decay 5e-4), same batches (netgrow's TensorLoader, batch 128,
random data). Runs alternate (plain, trainer, trainer+eval, plain, ...) so drifting machine load hits all
variants alike; the table reports the median and the best images/s of each variant (on a shared
machine the best run is the one least disturbed by other load, so the headline ratio uses it).

- ``plain``: ``zero_grad; cross_entropy(model(x), y).backward(); step`` over the loader, nothing else;
- ``trainer``: ``Trainer.run_stage`` without a test set (schedule, metric sums, NaN checks, epoch
  checkpoints, metrics rows, stage checkpoint, MAC count and setup all included in the time);
- ``trainer+eval``: the same plus evaluation on a 256-image test set after every epoch (training images
  per second of wall time: evaluation counts as overhead).

    python benchmarks/bench_trainer.py [--epochs 5] [--train 4096] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from netgrow.data.loader import TensorLoader
from netgrow.models import create
from netgrow.train import TrainConfig, Trainer, count_macs

RESULTS = Path(__file__).parent / "results" / "bench_trainer.json"


def data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def plain_loop(model: torch.nn.Module, train: TensorDataset, cfg: TrainConfig, epochs: int) -> float:
    """Seconds for ``epochs`` epochs of the minimal loop."""
    t0 = time.perf_counter()
    loader = TensorLoader(train, cfg.batch_size, shuffle=True, seed=cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    model.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return time.perf_counter() - t0


def trainer_run(model: torch.nn.Module, train: TensorDataset, test: TensorDataset | None, cfg: TrainConfig) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        Trainer(d, cfg, quiet=True).run_stage(0, "vgg11", model, train, test)
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine 1 thread is far less sensitive to other load

    torch.manual_seed(0)
    base = create("vgg11", num_classes=10, width=0.125, in_channels=1, input_size=28)
    train, test = data(args.train, 0), data(256, 1)
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.05, schedule="cosine", seed=0)
    images = args.epochs * args.train
    macs = count_macs(base, torch.zeros(1, 1, 28, 28))

    variants = {
        "plain": lambda m: plain_loop(m, train, cfg, args.epochs),
        "trainer": lambda m: trainer_run(m, train, None, cfg),
        "trainer+eval": lambda m: trainer_run(m, train, test, cfg),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    variants["plain"](copy.deepcopy(base))  # warm-up (allocator, kernels)
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(fn(copy.deepcopy(base)))

    ips = {k: [images / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in ips.items()}
    best = {k: max(v) for k, v in ips.items()}
    print(f"VGG11 width 1/8, 1x28x28, batch 128, {args.train} images x {args.epochs} epochs, "
          f"{macs:,} MACs/sample, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'variant':<14}{'median img/s':>14}{'best img/s':>12}{'min':>10}{'median ratio':>14}{'best ratio':>12}")
    for k in variants:
        print(f"{k:<14}{med[k]:>14.1f}{best[k]:>12.1f}{min(ips[k]):>10.1f}"
              f"{med[k] / med['plain']:>14.3f}{best[k] / best['plain']:>12.3f}")  # fmt: skip
    result = {
        "benchmark": "bench_trainer",
        "model": "vgg11 width 0.125, 1x28x28, 10 classes",
        "macs_per_sample": macs,
        "batch_size": cfg.batch_size,
        "train_images": args.train,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "images_per_s": ips,
        "median_images_per_s": med,
        "best_images_per_s": best,
        "ratio_trainer_vs_plain_best": best["trainer"] / best["plain"],
        "ratio_trainer_vs_plain_median": med["trainer"] / med["plain"],
        "ratio_trainer_eval_vs_plain_best": best["trainer+eval"] / best["plain"],
        "ratio_trainer_eval_vs_plain_median": med["trainer+eval"] / med["plain"],
        "goal": ">= 0.95 (trainer vs plain)",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": "cpu",
            "load_average_at_start": os.getloadavg(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
