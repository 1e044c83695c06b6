"""Clean failures of the `netgrow` command: a full disk and SIGTERM end in one line, and --resume is bitwise."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import torch

from netgrow.cli.main import main
from netgrow.train import safe_io

TINY2 = """
strategy = "scratch"
name = "tiny"
seed = 0
[data]
name = "digits"
limit_train = 200
limit_test = 100
[model]
arch = "vgg11"
width = 0.0625
[train]
epochs = 3
batch_size = 50
deterministic = true
"""


def run_cli(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def stage_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return safe_io.read(run_dir / "stages" / "stage0.safetensors")[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    d = tmp_path_factory.mktemp("ref")
    cfg = d / "exp.toml"
    cfg.write_text(TINY2)
    assert main(["run", str(cfg), "--out", str(d / "run"), "--quiet"]) == 0
    return stage_tensors(d / "run")


def assert_bitwise(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert sorted(ref) == sorted(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


@pytest.mark.slow
def test_disk_full_is_one_line_naming_the_file_and_resume_is_bitwise(tmp_path, capsys, monkeypatch, uninterrupted):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(TINY2)
    out = tmp_path / "run"
    real_write, real_fsync = safe_io.write_bytes_atomic, os.fsync
    writes = {"n": 0, "full": False}

    def fsync_full(fd: int) -> None:
        if writes["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    def write_second_checkpoint_on_a_full_disk(path, data):
        if Path(path).name == "last.safetensors":
            writes["n"] += 1
            writes["full"] = writes["n"] == 2
        try:
            return real_write(path, data)
        finally:
            writes["full"] = False

    monkeypatch.setattr(os, "fsync", fsync_full)
    monkeypatch.setattr(safe_io, "write_bytes_atomic", write_second_checkpoint_on_a_full_disk)
    rc, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netgrow: error: "), err
    assert str(out / "checkpoints" / "last.safetensors") in err and "No space left on device" in err
    assert "last.prev.safetensors' is kept" in err and "--resume" in err
    assert not list((out / "checkpoints").glob("*.tmp"))  # the partial file was removed
    monkeypatch.undo()
    rc, _, err = run_cli(["run", cfg, "--out", out, "--resume", "--quiet"], capsys)
    assert rc == 0, err
    assert_bitwise(uninterrupted, stage_tensors(out))


def test_read_only_file_system_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    """The stage directory cannot be created (the file system turned read-only during the run)."""
    cfg = tmp_path / "exp.toml"
    cfg.write_text(TINY2.replace("epochs = 3", "epochs = 1"))
    out = tmp_path / "run"
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self == out / "stages":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    rc, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert rc == 1 and err.count("\n") == 1 and err.startswith("netgrow: error: "), err
    assert str(out / "stages" / "stage0.safetensors") in err and "Read-only file system" in err
    assert "last.safetensors' is kept" in err and "--resume" in err


@pytest.mark.slow
def test_sigterm_in_the_cli_checkpoints_exits_143_and_resumes_bitwise(tmp_path, capsys, monkeypatch, uninterrupted):
    """SIGTERM mid-stage (as SLURM sends it): the step finishes, a checkpoint is written, exit 143."""
    from netgrow.train import loop

    cfg = tmp_path / "exp.toml"
    cfg.write_text(TINY2)
    out = tmp_path / "run"
    real_steps = loop.train_steps
    calls = {"n": 0}

    def on_fifth_step(ctx, batches, sums, step, stop_at, on_log=None, on_step=None):
        def hooked(s, sm):
            calls["n"] += 1
            if calls["n"] == 5:
                os.kill(os.getpid(), signal.SIGTERM)
            on_step(s, sm)

        return real_steps(ctx, batches, sums, step, stop_at, on_log, hooked)

    from netgrow.train import trainer

    monkeypatch.setattr(trainer, "train_steps", on_fifth_step)
    rc, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert rc == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err
    assert safe_io.read(out / "checkpoints" / "last.safetensors")[1]["step"] == 5
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is removed again
    monkeypatch.undo()
    rc, _, err = run_cli(["run", cfg, "--out", out, "--resume", "--quiet"], capsys)
    assert rc == 0, err
    assert_bitwise(uninterrupted, stage_tensors(out))


def test_threads_must_be_a_positive_integer(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "exp.toml", "--threads", "0"])
    assert info.value.code == 2 and "'0' is not an integer >= 1" in capsys.readouterr().err


def test_a_failed_write_after_training_names_the_file_and_the_resume_route(tmp_path, capsys, monkeypatch):
    """summary.json is written by the strategy after the Trainer is done: still one line, with --resume."""
    cfg = tmp_path / "exp.toml"
    cfg.write_text(TINY2.replace("epochs = 3", "epochs = 1"))
    out = tmp_path / "run"
    real_write = safe_io.write_bytes_atomic

    def full_for_the_summary(path, data):
        if Path(path).name == "summary.json":
            raise safe_io.storage_error(Path(path), OSError(errno.ENOSPC, "No space left on device"))
        return real_write(path, data)

    monkeypatch.setattr(safe_io, "write_bytes_atomic", full_for_the_summary)
    from netgrow.train import metrics

    monkeypatch.setattr(metrics, "write_bytes_atomic", full_for_the_summary)
    rc, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert rc == 1 and err.count("\n") == 1, err
    assert str(out / "summary.json") in err and "No space left on device" in err and "--resume" in err


def test_rotating_the_checkpoint_on_a_read_only_file_system_is_a_storage_error(tmp_path, monkeypatch):
    from netgrow.errors import StorageError
    from netgrow.train import checkpoint as ckpt

    ckpt.save_last(tmp_path, {"w": torch.zeros(2)}, {"kind": "netgrow.train_state"})

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(StorageError, match="cannot write .*last.safetensors.*Read-only file system"):
        ckpt.save_last(tmp_path, {"w": torch.ones(2)}, {"kind": "netgrow.train_state"})
    monkeypatch.undo()
    assert torch.equal(safe_io.read(tmp_path / "last.safetensors")[0]["w"], torch.zeros(2))  # kept
