"""Kill-and-resume: a subprocess is SIGKILLed mid-run, resumed, and must end bitwise where an uninterrupted run ends.

The run (tests/scripts/train_small.py): stage 0 trains a small MLP (BatchNorm, dropout, SGD momentum) for
3 epochs of 6 steps with checkpoints every epoch and every 4 steps; then the hidden layer is widened
(Net2WiderNet by hand, noise drawn from the global RNG) and stage 1 trains 2 epochs with the optimizer
state carried through the widening. Deterministic algorithms, one thread, CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netgrow.train import safe_io

SCRIPT = Path(__file__).parent / "scripts" / "train_small.py"
STAGE0_STEPS = 18


def run(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(run_dir), *args], capture_output=True, text=True, timeout=300, env=env
    )


def final(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return safe_io.read(run_dir / "final.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, torch.Tensor], dict]:
    d = tmp_path_factory.mktemp("ref")
    p = run(d)
    assert p.returncode == 0, p.stderr
    return final(d)


def assert_same(reference, run_dir: Path) -> None:
    ref_t, ref_meta = reference
    got_t, got_meta = final(run_dir)
    assert sorted(ref_t) == sorted(got_t)
    for k in ref_t:
        assert torch.equal(ref_t[k], got_t[k]), k
    assert got_meta["M"] == ref_meta["M"]
    assert [h["test_acc"] for h in got_meta["history"]] == [h["test_acc"] for h in ref_meta["history"]]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["event"], r["epoch"]) for r in rows] == [
        (0, "epoch", 1), (0, "epoch", 2), (0, "epoch", 3), (0, "stage_end", 3),
        (1, "epoch", 1), (1, "epoch", 2), (1, "stage_end", 2),
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_after",
    [
        10,  # stage 0, epoch 2, two steps after the mid-epoch checkpoint at step 8
        STAGE0_STEPS,  # the first step of stage 1: stage 0 is finished, the growth is redone on resume
        STAGE0_STEPS + 9,  # stage 1, epoch 2 (after the mid-epoch checkpoint at its step 8)
    ],
)
def test_sigkill_and_resume_is_bitwise_exact(tmp_path, reference, kill_after):
    p = run(tmp_path, "--kill-after", str(kill_after))
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not (tmp_path / "final.safetensors").exists()
    p = run(tmp_path, "--resume")
    assert p.returncode == 0, p.stderr
    assert_same(reference, tmp_path)


@pytest.mark.slow
def test_sigkill_and_resume_across_netgrow_widen(tmp_path):
    """The same with ``netgrow.widen`` (mapping seed drawn from the global RNG) as the growth step."""
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    p = run(ref_dir, "--growth", "widen")
    assert p.returncode == 0, p.stderr
    p = run(run_dir, "--growth", "widen", "--kill-after", str(STAGE0_STEPS + 2))
    assert p.returncode == -signal.SIGKILL, p.stderr
    p = run(run_dir, "--growth", "widen", "--resume")
    assert p.returncode == 0, p.stderr
    assert_same(final(ref_dir), run_dir)
    assert final(ref_dir)[0]["0.weight"].shape == (16, 6)


@pytest.mark.slow
def test_sigkill_inside_a_checkpoint_write(tmp_path, reference):
    """Killed between the complete temporary file and its rename: `last` is missing, `prev` is used."""
    p = run(tmp_path, "--kill-in-write", "3")
    assert p.returncode == -signal.SIGKILL, p.stderr
    ckpts = tmp_path / "checkpoints"
    assert not (ckpts / "last.safetensors").exists() and (ckpts / "last.prev.safetensors").exists()
    assert any(f.name.endswith(".tmp") for f in ckpts.iterdir())  # the orphaned temporary file
    p = run(tmp_path, "--resume")
    assert p.returncode == 0, p.stderr
    assert "resuming from the previous checkpoint" in p.stderr
    assert_same(reference, tmp_path)


def flip_bytes_in_tensor(path: Path, prefix: str = "model.") -> str:
    """XOR four bytes in the middle of the first ``prefix*weight`` tensor's data; returns its name."""
    data = bytearray(path.read_bytes())
    spans = safe_io._tensor_spans(bytes(data))
    name = next(n for n in sorted(spans) if n.startswith(prefix) and n.endswith("weight"))
    _, _, start, end = spans[name]
    middle = (start + end) // 2
    for i in range(4):
        data[middle + i] ^= 0x5A
    path.write_bytes(bytes(data))
    return name


@pytest.mark.slow
def test_flipped_bytes_in_last_checkpoint_fall_back_to_prev(tmp_path, reference):
    """Corruption inside tensor data is caught by the checksums and handled exactly like truncation."""
    p = run(tmp_path, "--kill-after", "10")  # last = mid-epoch step 8, prev = epoch 1
    assert p.returncode == -signal.SIGKILL, p.stderr
    name = flip_bytes_in_tensor(tmp_path / "checkpoints" / "last.safetensors")
    p = run(tmp_path, "--resume")
    assert p.returncode == 0, p.stderr
    assert f"tensor {name!r} does not match its checksum" in p.stderr
    assert "resuming from the previous checkpoint" in p.stderr
    assert_same(reference, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("after", [10, STAGE0_STEPS + 9])
def test_sigterm_checkpoints_then_resume_is_bitwise_exact(tmp_path, reference, after):
    p = run(tmp_path, "--sigterm-after", str(after))
    assert p.returncode == 143, p.stderr
    assert "stopped by SIGTERM" in p.stderr and "--resume" in p.stderr
    _, meta = safe_io.read(tmp_path / "checkpoints" / "last.safetensors")
    assert meta["step"] == (after + 1 if after < STAGE0_STEPS else after + 1 - STAGE0_STEPS)  # the step it was in
    p = run(tmp_path, "--resume")
    assert p.returncode == 0, p.stderr
    assert_same(reference, tmp_path)
