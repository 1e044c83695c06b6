"""DDP on CPU: two gloo processes under torchrun train, grow and train again.

Parameters must be identical across ranks before every step, and equal (to 1e-5) to one process training
with the same global batch: the loader gives rank r the positions r, r + 2, ... of every global batch, and
DDP averages the two half-batch gradients into the full-batch mean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netgrow.train import safe_io

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_ddp_two_ranks_match_each_other_and_one_process(tmp_path):
    ddp_out, one_out = tmp_path / "ddp_out", tmp_path / "one_out"
    ddp_out.mkdir()
    one_out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
           str(tmp_path / "ddp_run"), str(ddp_out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one_run"), str(one_out)],
                       capture_output=True, text=True, timeout=300, env=_env())  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]

    r0, m0 = safe_io.read(ddp_out / "params_rank0.safetensors")
    r1, m1 = safe_io.read(ddp_out / "params_rank1.safetensors")
    one, m_one = safe_io.read(one_out / "params_rank0.safetensors")
    assert (m0["world_size"], m1["world_size"], m_one["world_size"]) == (2, 2, 1)
    # 128 samples / global batch 32 = 4 steps per epoch, 2 epochs per stage -> 8 recorded steps per stage
    assert sorted(r0) == sorted(one) and len([k for k in one if k.startswith("s0.0")]) == 8
    assert len([k for k in one if k.startswith("s1.0")]) == 8
    for k in sorted(r0):
        assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
        torch.testing.assert_close(r0[k], one[k], rtol=0, atol=1e-5, msg=f"DDP vs one process at {k}")
    assert not torch.equal(one["s0.0000"], one["s0.end"]) and one["s1.end"].numel() > one["s0.end"].numel()
    assert m0["test_acc"] == pytest.approx(m_one["test_acc"], abs=1e-9)  # sharded evaluation counts each sample once
    assert m0["M"] == m_one["M"] and m0["M"] > 0  # samples summed over ranks
    rows = [json.loads(x) for x in (tmp_path / "ddp_run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6  # written by rank 0 only: 2 epochs + stage_end, twice
    cfg = json.loads((tmp_path / "ddp_run" / "train_config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["per_rank_batch_size"] == 16


def _run_bn(tmp_path: Path, name: str, *flags: str, ranks: int = 2) -> list[dict[str, torch.Tensor]]:
    out = tmp_path / f"{name}_out"
    out.mkdir()
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    p = subprocess.run([*(launch if ranks > 1 else [sys.executable]), str(SCRIPT), str(tmp_path / f"{name}_run"),
                        str(out), "--bn", *flags], capture_output=True, text=True, timeout=300, env=_env())  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return [safe_io.read(out / f"params_rank{r}.safetensors")[0] for r in range(ranks)]


@pytest.mark.slow
def test_sync_batchnorm_matches_one_process_through_a_growth_step(tmp_path):
    """With BatchNorm, DDP normalises each rank's half batch by its own statistics: the 2-rank run drifts from
    one process, and the ranks end with different running statistics. ``sync_batchnorm`` uses the global
    batch's statistics, before and after the widening (the BatchNorm is widened with the layer): the ranks
    stay identical, running statistics included, and match one process."""
    (one,) = _run_bn(tmp_path, "one", ranks=1)
    synced = _run_bn(tmp_path, "sync", "--sync-bn")
    per_rank = _run_bn(tmp_path, "per_rank")
    assert one["s1.end"].numel() > one["s0.end"].numel() and "s1.bn_stats" in one  # the growth step happened
    for k in sorted(one):
        assert torch.equal(synced[0][k], synced[1][k]), f"ranks differ at {k}"
        torch.testing.assert_close(synced[0][k], one[k], rtol=0, atol=1e-5, msg=f"sync_batchnorm vs one process at {k}")
    # the documented per-rank difference: same weights on both ranks (DDP averages the gradients), but not
    # those of one process, and each rank's running statistics are its own shard's
    assert torch.equal(per_rank[0]["s1.end"], per_rank[1]["s1.end"])
    assert (per_rank[0]["s1.end"] - one["s1.end"]).abs().max() > 1e-3
    assert not torch.equal(per_rank[0]["s1.bn_stats"], per_rank[1]["s1.bn_stats"])


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_every_rank_with_a_checkpoint_and_resume_is_exact(tmp_path):
    """SIGTERM reaching rank 0 only: the ranks agree at the next check point (no rank left waiting in a
    collective), rank 0 writes the checkpoint, all exit 143; resuming under torchrun ends where an
    uninterrupted 2-rank run ends."""
    def launch(run: str, out: str, *flags: str) -> subprocess.CompletedProcess:
        (tmp_path / out).mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
               str(tmp_path / run), str(tmp_path / out), *flags]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())

    p = launch("ref_run", "ref_out")
    assert p.returncode == 0, p.stderr[-3000:]
    p = launch("run", "out", "--sigterm-after", "2")  # stage 0, epoch 1: stops at the end of epoch 1
    assert p.returncode != 0
    assert "rank 0:" in p.stderr and "rank 1:" in p.stderr and p.stderr.count("stopped by SIGTERM") == 2
    meta = safe_io.read(tmp_path / "run" / "checkpoints" / "last.safetensors")[1]
    assert (meta["stage"], meta["epoch"], meta["done"]) == (0, 1, False)
    p = launch("run", "out", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    ref = safe_io.read(tmp_path / "ref_out" / "params_rank0.safetensors")[0]
    for rank in (0, 1):
        got = safe_io.read(tmp_path / "out" / f"params_rank{rank}.safetensors")[0]
        assert torch.equal(got["s1.end"], ref["s1.end"]), rank
