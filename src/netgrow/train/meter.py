"""The compute meter: what a training stage cost, on the same scale for every strategy.

- ``samples``: training samples processed (all ranks together), ``iterations``: optimizer steps;
- ``macs_per_sample``: multiply-accumulates of one forward pass for one sample
  (:func:`netgrow.train.macs.count_macs`, with masked zero weights skipped under zero-mask training);
- ``M = samples x macs_per_sample``: the forward MACs of training, the cumulative paper's Eq. 1
  (``../shared/papers/000_83a5324b55c29a7b.txt``: #training iterations x #MACs, counted here per sample so
  batch size and partial batches are exact). Evaluation passes are not counted;
- ``train_flops = 3 x 2 x M``: a backward pass costs about two forward passes (3 in all) and one MAC is
  2 FLOPs. An estimate, stated as such;
- ``wall_time`` in seconds (training + evaluation + checkpoints of the stage, across resumes);
- ``peak_memory`` in bytes: CUDA max allocated on GPU, the process's peak RSS on CPU.

Example::

    >>> m = ComputeMeter(macs_per_sample=1000)
    >>> m.add(samples=256, iterations=2)
    >>> d = m.as_dict(); d["M"], d["train_flops"]
    (256000, 1536000)
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch

FLOPS_PER_MAC = 2
TRAIN_PASSES = 3  # forward + backward (~2 forward passes)


def peak_memory(device: torch.device | str = "cpu") -> int:
    """Peak memory in bytes: CUDA max allocated on ``device`` if it is a GPU, else the process's peak RSS."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


class ComputeMeter:
    """Per-stage compute; ``state`` restores a meter saved with :meth:`as_dict` (resume)."""

    def __init__(self, macs_per_sample: int, device: torch.device | str = "cpu", state: dict[str, Any] | None = None):
        self.macs_per_sample = int(macs_per_sample)
        self.device = torch.device(device)
        state = state or {}
        self.samples = int(state.get("samples", 0))
        self.iterations = int(state.get("iterations", 0))
        self._wall_before = float(state.get("wall_time", 0.0))
        self._peak_before = int(state.get("peak_memory", 0))
        self._t0: float | None = None

    def start(self) -> None:
        """Start (or continue) the wall clock."""
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        """Pause the wall clock."""
        if self._t0 is not None:
            self._wall_before += time.perf_counter() - self._t0
            self._t0 = None

    def add(self, samples: int, iterations: int) -> None:
        """Count ``samples`` training samples over ``iterations`` optimizer steps."""
        self.samples += int(samples)
        self.iterations += int(iterations)

    @property
    def wall_time(self) -> float:
        running = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self._wall_before + running

    @property
    def M(self) -> int:  # noqa: N802 - the paper's symbol
        return self.samples * self.macs_per_sample

    def as_dict(self) -> dict[str, Any]:
        """``samples, iterations, macs_per_sample, M, train_flops, wall_time, peak_memory`` (JSON)."""
        m = self.M
        return {
            "samples": self.samples,
            "iterations": self.iterations,
            "macs_per_sample": self.macs_per_sample,
            "M": m,
            "train_flops": TRAIN_PASSES * FLOPS_PER_MAC * m,
            "wall_time": self.wall_time,
            "peak_memory": max(self._peak_before, peak_memory(self.device)),
        }


def total(meters: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of stage meter dicts (``macs_per_sample`` and ``peak_memory``: the maximum)."""
    out: dict[str, Any] = {"samples": 0, "iterations": 0, "M": 0, "train_flops": 0, "wall_time": 0.0}
    for m in meters:
        for k in out:
            out[k] += m.get(k, 0)
    out["macs_per_sample"] = max((m.get("macs_per_sample", 0) for m in meters), default=0)
    out["peak_memory"] = max((m.get("peak_memory", 0) for m in meters), default=0)
    return out
