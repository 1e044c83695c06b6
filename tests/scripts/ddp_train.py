"""Entry script for tests/test_ddp.py: train, grow, train again -- under torchrun or as one process.

    torchrun --nproc_per_node=2 ddp_train.py RUN_DIR OUT_DIR [--bn] [--sync-bn]    (DDP, gloo on CPU)
    python ddp_train.py RUN_DIR OUT_DIR [--bn]                                    (one process, same global batch)

``--bn`` puts a BatchNorm after the hidden layer (it follows the widening); ``--sync-bn`` trains with
``TrainConfig(sync_batchnorm=True)``. ``--sigterm-after N``: rank 0 alone receives SIGTERM before its
(N+1)-th training forward (the run is inside ``graceful_stop``: every rank stops at the same point with a
checkpoint and exits 143); ``--resume`` continues the run in RUN_DIR.

Every rank records its flattened parameters before every training step and at the end of each stage
(OUT_DIR/params_rank{r}.safetensors), so the test can compare ranks step by step.
"""

from __future__ import annotations

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


BN = "--bn" in sys.argv


def small(hidden: int) -> nn.Module:
    middle = nn.BatchNorm1d(hidden) if BN else nn.Identity()
    return nn.Sequential(nn.Linear(6, hidden), middle, nn.Tanh(), nn.Linear(hidden, 3))


def widen(model: nn.Module) -> nn.Module:
    """Hidden 8 -> 12 by copying units 0..3, with seeded noise on the copies (same on every rank)."""
    index = torch.cat([torch.arange(8), torch.arange(4)])
    counts = torch.bincount(index, minlength=8)
    big = small(12)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        big[0].weight.copy_(model[0].weight[index])
        big[0].weight[8:] += 1e-2 * torch.randn(4, 6, generator=g)
        big[0].bias.copy_(model[0].bias[index])
        big[3].weight.copy_(model[3].weight[:, index] / counts[index].float())
        big[3].bias.copy_(model[3].bias)
        if BN:
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(big[1], name).copy_(getattr(model[1], name)[index])
            big[1].num_batches_tracked.copy_(model[1].num_batches_tracked)
    out = DimMap.replicate(0, index, counts, "out")
    pm = {
        "0.weight": ParamSource("0.weight", [out]), "0.bias": ParamSource("0.bias", [out]),
        "3.weight": ParamSource("3.weight", [DimMap.replicate(1, index, counts, "in")]),
        "3.bias": ParamSource("3.bias"),
    }  # fmt: skip
    if BN:
        pm.update({"1.weight": ParamSource("1.weight", [out]), "1.bias": ParamSource("1.bias", [out])})
    set_param_map(big, pm)
    return big


def option(name: str) -> str | None:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


def main() -> None:
    sigterm_after = option("--sigterm-after")
    run_dir, out_dir = [a for a in sys.argv[1:] if not a.startswith("--") and a != sigterm_after]
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    records: dict[str, torch.Tensor] = {}

    def recorder(stage: int):
        def hook(module: nn.Module, inputs: tuple) -> None:
            if module.training:
                vec = torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()
                records[f"s{stage}.{len([k for k in records if k.startswith(f's{stage}.')]):04d}"] = vec

        return hook

    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.1, momentum=0.9, weight_decay=1e-3, schedule="cosine", seed=4,
                      sync_batchnorm="--sync-bn" in sys.argv)
    trainer = Trainer(run_dir, cfg, quiet=True, resume="--resume" in sys.argv)
    forwards = [0]

    def sigterm_hook(module: nn.Module, inputs: tuple) -> None:
        if module.training and sigterm_after is not None and rank == 0:
            forwards[0] += 1
            if forwards[0] == int(sigterm_after) + 1:
                os.kill(os.getpid(), signal.SIGTERM)

    train, test = blobs(128, 0, shift=1.5), blobs(60, 1, shift=1.5)  # stage 1 tests on 61 samples: the DDP shards get padded
    torch.manual_seed(0)
    model = small(8)
    model.register_forward_pre_hook(recorder(0))
    model.register_forward_pre_hook(sigterm_hook)
    r0 = trainer.run_stage(0, "small", model, train, test)
    records["s0.end"] = torch.cat([p.detach().reshape(-1) for p in r0.model.parameters()])
    big = widen(r0.model)
    big.register_forward_pre_hook(recorder(1))
    big.register_forward_pre_hook(sigterm_hook)
    r1 = trainer.run_stage(1, "wide", big, train, blobs(61, 1, shift=1.5), lr=0.01, carry_from=(r0.model, r0.optimizer_state))
    records["s1.end"] = torch.cat([p.detach().reshape(-1) for p in r1.model.parameters()])
    if BN:
        records["s1.bn_stats"] = torch.cat([r1.model[1].running_mean, r1.model[1].running_var])
    meta = {"test_acc": [h["test_acc"] for h in r0.history + r1.history], "M": trainer.totals["M"],
            "world_size": trainer.dist.world_size, "rank": rank}  # fmt: skip
    safe_io.write_atomic(os.path.join(out_dir, f"params_rank{rank}.safetensors"), records, meta)


if __name__ == "__main__":
    try:
        with graceful_stop():
            main()
    except RunInterrupted as exc:
        print(f"rank {os.environ.get('RANK', '0')}: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)
