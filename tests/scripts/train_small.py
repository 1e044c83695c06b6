"""Entry script for tests/test_resume.py: a two-stage run with growth in between, killable on purpose.

    python train_small.py RUN_DIR [--resume] [--kill-after N] [--sigterm-after N] [--kill-in-write N]
                          [--growth hand|widen]

``--kill-after N``: SIGKILL this process right before its (N+1)-th training forward pass.
``--sigterm-after N``: send this process SIGTERM right before its (N+1)-th training forward pass; the run
is inside ``graceful_stop``, so it finishes the step, writes a checkpoint and exits 143.
``--kill-in-write N``: SIGKILL it inside the N-th epoch-checkpoint write, after the temporary file is
complete but before it is renamed into place. The final weights go to RUN_DIR/final.safetensors.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import torch
from torch import nn

from netgrow.ops.param_map import DimMap, ParamSource, set_param_map
from netgrow.errors import RunInterrupted
from netgrow.train import TrainConfig, Trainer, graceful_stop, safe_io

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: toy_data
from toy_data import blobs  # noqa: E402


def small(hidden: int = 12) -> nn.Module:
    return nn.Sequential(nn.Linear(6, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 3))


def grow_by_hand(model: nn.Module) -> nn.Module:
    """Net2WiderNet on the hidden layer 12 -> 16 (units 0..3 copied); the copies get noise from the global RNG."""
    index = torch.cat([torch.arange(12), torch.arange(4)])
    counts = torch.bincount(index, minlength=12)
    big = small(16)
    with torch.no_grad():
        big[0].weight.copy_(model[0].weight[index])
        big[0].weight[12:] += 1e-3 * torch.randn(4, 6)  # draws from the RNG: resume must restore it exactly
        big[0].bias.copy_(model[0].bias[index])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(big[1], name).copy_(getattr(model[1], name)[index])
        big[1].num_batches_tracked.copy_(model[1].num_batches_tracked)
        big[4].weight.copy_(model[4].weight[:, index] / counts[index].to(model[4].weight.dtype))
        big[4].bias.copy_(model[4].bias)
    out = DimMap.replicate(0, index, counts, "out")
    pm = {n: ParamSource(n, [out]) for n in ("0.weight", "0.bias", "1.weight", "1.bias")}
    pm["4.weight"] = ParamSource("4.weight", [DimMap.replicate(1, index, counts, "in")])
    pm["4.bias"] = ParamSource("4.bias")
    set_param_map(big, pm)
    return big


def grow_with_widen(model: nn.Module) -> nn.Module:
    import netgrow

    # seed=None: the mapping is drawn from the global RNG, which a resumed run must have restored
    return netgrow.widen(model, {"0": 16}, example_input=torch.zeros(2, 6), noise=1e-3, seed=None)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kill-after", type=int, default=None)
    p.add_argument("--sigterm-after", type=int, default=None)
    p.add_argument("--kill-in-write", type=int, default=None)
    p.add_argument("--growth", choices=["hand", "widen"], default="hand")
    args = p.parse_args()
    torch.set_num_threads(1)

    if args.kill_in_write is not None:
        real_replace = os.replace
        writes = [0]

        def replace(src, dst):
            if str(dst).endswith("last.safetensors") and str(src).endswith(".tmp"):
                writes[0] += 1
                if writes[0] == args.kill_in_write:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)

        os.replace = replace

    forwards = [0]

    def kill_hook(module: nn.Module, inputs: tuple) -> None:
        if module.training and args.kill_after is not None:
            forwards[0] += 1
            if forwards[0] > args.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if module.training and args.sigterm_after is not None:
            forwards[0] += 1
            if forwards[0] == args.sigterm_after + 1:
                os.kill(os.getpid(), signal.SIGTERM)

    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, checkpoint_every=4, deterministic=True, seed=1)
    trainer = Trainer(args.run_dir, cfg, quiet=True, resume=args.resume)
    train, test = blobs(96, 0), blobs(48, 1)

    torch.manual_seed(0)
    model = small()
    handle = model.register_forward_pre_hook(kill_hook)
    r0 = trainer.run_stage(0, "small", model, train, test)
    handle.remove()  # growth copies the model (and would copy the hook with it)
    grow = grow_by_hand if args.growth == "hand" else grow_with_widen
    big = grow(r0.model)
    big.register_forward_pre_hook(kill_hook)
    r1 = trainer.run_stage(1, "wide", big, train, test, epochs=2, lr=0.005, carry_from=(r0.model, r0.optimizer_state))
    safe_io.write_atomic(
        os.path.join(args.run_dir, "final.safetensors"), r1.model.state_dict(),
        {"test_acc": r1.test_acc, "M": trainer.totals["M"], "history": r0.history + r1.history},
    )  # fmt: skip


if __name__ == "__main__":
    try:
        with graceful_stop():
            main()
    except RunInterrupted as exc:
        print(f"netgrow: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)
