"""Which reading of Table 2's pruning ratio R reproduces its brackets? Parameter and MAC counts only.

Feng & Panda, Table 2 (CIFAR 50 -> 100, VGG11 -> VGG19, R = 50 %): parameters 0.77x and MACs 0.88x of
scratch VGG19; with the zero mask kept, 0.46x and 0.38x. The counts do not depend on the training after
the expansion, only on which kernels of the trained VGG11 are pruned, so this script takes a trained VGG11
(``--vgg11 PATH``, a netgrow checkpoint, e.g. stage 0 of the frontier benchmark; default: one epoch on the
first 5 Fashion-MNIST classes), prunes it by both readings (filters per layer: ``netgrow.prune``; 2-D
kernels over all layers: ``netgrow.ops.prune_kernels``), grows it to VGG19 (Net2DeeperNet) and counts the
non-zero parameters and the MACs per sample with zeros skipped, with no mask, the zero mask on all zeros of
the inserted layers, and on their surround taps only.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_pruning_counts.py --vgg11 runs/.../stage0.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import _common as c

NAME = "pruning_counts"
PAPER = {"R=50%": {"params": 0.77, "macs": 0.88}, "R=50% + zero mask": {"params": 0.46, "macs": 0.38}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vgg11", help="a trained 5-class VGG11 checkpoint (netgrow.save); default: train one epoch")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--ratio", type=float, default=0.5)
    args = p.parse_args()
    import netgrow
    from netgrow import models, ops
    from netgrow.data import load, nested_subsets
    from netgrow.models.grow import grow
    from netgrow.strategies.base import Growth
    from netgrow.strategies.growth import carried_names, inserted_weights, zero_masks
    from netgrow.train.macs import count_macs

    train, _ = load("fashion_mnist")
    d5 = nested_subsets(train, [5], seed=0)[0]
    x = torch.zeros(1, 1, 28, 28)
    if args.vgg11:
        vgg11 = netgrow.load(args.vgg11)
        source = args.vgg11
    else:
        from netgrow.train import TrainConfig, Trainer

        torch.manual_seed(0)
        vgg11 = models.create("vgg11", num_classes=5, width=args.width, in_channels=1, input_size=28)
        out = c.HERE / "runs" / f"{NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
        Trainer(out, TrainConfig(epochs=1, schedule="constant"), quiet=True).run_stage(0, "vgg11", vgg11, d5, None)
        source = "VGG11 trained 1 epoch (SGD 0.05, 5 classes)"
    vgg11.eval()
    batches = [d5.normalize(d5.data[:512])] if hasattr(d5, "normalize") else None
    torch.manual_seed(0)
    scratch = models.create("vgg19", num_classes=10, width=args.width, in_channels=1, input_size=28)
    base_params = sum(p.numel() for p in scratch.parameters())
    base_macs = count_macs(scratch, x)

    def grown(model: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
        chain = Growth(model)
        chain.apply("grow", grow, "vgg19", x, data=batches)
        chain.apply("expand", ops.expand_classes, 10, x, seed=0)
        return chain.result(), chain.map

    rows: dict[str, Any] = {}

    def record(label: str, model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = sum(p.numel() for p in model.parameters()) - sum(int(m.sum()) for m in masks.values())
        macs = count_macs(model, x, masks=masks or None)
        rows[label] = {"params": params, "macs": macs, "params_ratio": params / base_params,
                       "macs_ratio": macs / base_macs, "paper": PAPER.get(label.split(" [")[0])}

    g0, _ = grown(vgg11)
    record("R=0", g0, {})
    filt = ops.prune(vgg11, args.ratio, x)
    gf, pmf = grown(filt)
    record("R=50% [filters]", gf, {})
    record("R=50% + zero mask [filters, all zeros]", gf, zero_masks(gf, inserted_weights(gf, pmf)))
    record("R=50% + zero mask [filters, surround]", gf, zero_masks(gf, inserted_weights(gf, pmf), surround_only=True))
    kern, kmasks = ops.prune_kernels(vgg11, args.ratio)
    gk, pmk = grown(kern)
    km = zero_masks(gk, carried_names(pmk, set(kmasks)))
    record("R=50% [kernels]", gk, km)
    ins = inserted_weights(gk, pmk)
    record("R=50% + zero mask [kernels, all zeros]", gk, {**km, **zero_masks(gk, ins)})
    record("R=50% + zero mask [kernels, surround]", gk, {**km, **zero_masks(gk, ins, surround_only=True)})
    for k, v in rows.items():
        print(f"{k:45s} params {v['params']:>8,d} ({v['params_ratio']:.2f}x)  MACs {v['macs']:>10,d} ({v['macs_ratio']:.2f}x)"
              + (f"  paper {v['paper']['params']}x / {v['paper']['macs']}x" if v["paper"] else ""))
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    path = c.RESULTS / f"{NAME}.json"
    path.write_text(json.dumps({"benchmark": NAME, "source": source, "width": args.width, "ratio": args.ratio,
                                "scratch": {"params": base_params, "macs": base_macs}, "rows": rows,
                                "machine": c.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
