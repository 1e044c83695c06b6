"""Entry script for tests/test_ddp.py: train, grow, train again -- under torchrun or as one process.

    torchrun --nproc_per_node=2 ddp_train.py RUN_DIR OUT_DIR     (DDP, gloo on CPU)
    python ddp_train.py RUN_DIR OUT_DIR                         (one process, same global batch)

Every rank records its flattened parameters before every training step and at the end of each stage
(OUT_DIR/params_rank{r}.safetensors), so the test can compare ranks step by step.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from netgrow.ops.param_map import DimMap, ParamSource, set_param_map
from netgrow.train import TrainConfig, Trainer, safe_io


def blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g)
    x[torch.arange(n), y] += 1.5
    return TensorDataset(x, y)


def small(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, 3))


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
        big[2].weight.copy_(model[2].weight[:, index] / counts[index].float())
        big[2].bias.copy_(model[2].bias)
    out = DimMap.replicate(0, index, counts, "out")
    set_param_map(big, {
        "0.weight": ParamSource("0.weight", [out]), "0.bias": ParamSource("0.bias", [out]),
        "2.weight": ParamSource("2.weight", [DimMap.replicate(1, index, counts, "in")]),
        "2.bias": ParamSource("2.bias"),
    })  # fmt: skip
    return big


def main() -> None:
    run_dir, out_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    records: dict[str, torch.Tensor] = {}

    def recorder(stage: int):
        def hook(module: nn.Module, inputs: tuple) -> None:
            if module.training:
                vec = torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()
                records[f"s{stage}.{len([k for k in records if k.startswith(f's{stage}.')]):04d}"] = vec

        return hook

    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.1, momentum=0.9, weight_decay=1e-3, schedule="cosine", seed=4)
    trainer = Trainer(run_dir, cfg, quiet=True)
    train, test = blobs(128, 0), blobs(60, 1)  # stage 1 tests on 61 samples: the DDP shards get padded
    torch.manual_seed(0)
    model = small(8)
    model.register_forward_pre_hook(recorder(0))
    r0 = trainer.run_stage(0, "small", model, train, test)
    records["s0.end"] = torch.cat([p.detach().reshape(-1) for p in r0.model.parameters()])
    big = widen(r0.model)
    big.register_forward_pre_hook(recorder(1))
    r1 = trainer.run_stage(1, "wide", big, train, blobs(61, 1), lr=0.01, carry_from=(r0.model, r0.optimizer_state))
    records["s1.end"] = torch.cat([p.detach().reshape(-1) for p in r1.model.parameters()])
    meta = {"test_acc": [h["test_acc"] for h in r0.history + r1.history], "M": trainer.totals["M"],
            "world_size": trainer.dist.world_size, "rank": rank}  # fmt: skip
    safe_io.write_atomic(os.path.join(out_dir, f"params_rank{rank}.safetensors"), records, meta)


if __name__ == "__main__":
    main()
