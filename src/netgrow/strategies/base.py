"""What every strategy shares: stages run by the one Trainer, the data subsets, and summary.json.

A strategy is a list of :class:`Stage` s (name, classes K_i, architecture, width, epoch budget, learning
rate, stopping rule) run in order by ``netgrow.train.Trainer``; between stages the strategy applies its
growth ops (deterministic given the seed, so ``--resume`` re-applies them and the Trainer then loads the
saved weights). :class:`Experiment` holds the pieces (config, run directory, nested data subsets, Trainer)
and :meth:`Experiment.run_stage` adds the stage's ``info`` (classes, arch, width, class order) to every
metrics row. :meth:`Experiment.write_summary` writes ``RUN_DIR/summary.json`` whose ``M_total`` is the sum
of the stage meters' ``M`` (the cumulative paper's Eq. 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from netgrow.ops.param_map import ParamMap, compose, param_map, set_param_map

if TYPE_CHECKING:
    from netgrow.strategies.experiment import ExperimentConfig

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


@dataclass
class Stage:
    """One planned training stage.

    ``data_index`` selects the nested subset (``Experiment.subset("train", data_index)``); ``lr=None`` uses
    ``train.lr``; ``stopping`` is a Trainer stopping rule (None: the epoch budget only).
    """

    name: str
    classes: int
    arch: str
    width: float
    epochs: int
    data_index: int = 0
    lr: float | None = None
    stopping: Callable[[list[dict[str, Any]]], bool] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageRecord:
    """A finished stage: its plan, the Trainer's result and strategy-specific extras for the summary."""

    stage: Stage
    result: Any  # netgrow.train.StageResult
    extra: dict[str, Any] = field(default_factory=dict)


def is_main_process() -> bool:
    """False on the ranks other than 0 of a ``torchrun`` launch (only rank 0 writes run files)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch seed without disturbing the caller's RNG state."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class Growth:
    """Apply a chain of ops to a model and keep the composed parameter map (old model -> final model).

    The Trainer carries optimizer state through ``param_map(model)``, which each op sets relative to its
    own input only; composing keeps the chain prune -> grow -> widen -> expand_classes traceable.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.map: ParamMap | None = None
        self.ops: list[str] = []

    def apply(self, name: str, fn: Callable[..., nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
        new = fn(self.model, *args, **kwargs)
        pm = param_map(new)
        if pm is not None:
            self.map = pm if self.map is None else compose(self.map, pm)
        self.model = new
        self.ops.append(name)
        return new

    def result(self) -> nn.Module:
        if self.map is not None:
            set_param_map(self.model, self.map)
        return self.model


def limit(dataset: Any, n: int | None, seed: int) -> Any:
    """At most ``n`` samples of ``dataset`` (a seeded random choice, original order kept)."""
    if n is None or n >= len(dataset):
        return dataset
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=gen)[:n].sort().values
    if hasattr(dataset, "select"):
        return dataset.select(idx)
    from netgrow.data.subsets import ClassSubset

    k = int(dataset.num_classes)
    return ClassSubset(dataset, idx, torch.arange(k), list(dataset.classes), list(getattr(dataset, "class_order",
                       range(k))), getattr(dataset, "name", "subset"))


def input_shape(dataset: Any) -> tuple[int, ...]:
    """Shape of one sample (C, H, W) or (C, L)."""
    shape = getattr(dataset, "input_shape", None)
    return tuple(shape) if shape is not None else tuple(dataset[0][0].shape)


class Experiment:
    """Config + run directory + nested data subsets + Trainer, shared by the stages of one run."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, train_set: Any, test_set: Any, *,
                 quiet: bool = False, resume: bool = False, trainer: Any = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.quiet, self.resume = quiet, resume
        self.class_counts = [int(k) for k in cfg.data.schedule] or [int(train_set.num_classes)]
        self._data = {"train": limit(train_set, cfg.data.limit_train, cfg.data.seed),
                      "test": limit(test_set, cfg.data.limit_test, cfg.data.seed + 1)}
        val_fraction = cfg.data.val_fraction
        if val_fraction > 0:  # every decision reads this hold-out; the test set is only reported
            from netgrow.data import split

            self._data["train"], self._data["val"] = split(self._data["train"], val_fraction, seed=cfg.data.seed)
        self._subsets: dict[tuple[str, int], Any] = {}
        self.class_order = list(self.subset("train", len(self.class_counts) - 1).class_order)
        self.input_shape = input_shape(train_set)
        self.example_input = torch.zeros(1, *self.input_shape)
        self.records: list[StageRecord] = []
        self.extra: dict[str, Any] = {}
        if trainer is None:
            from netgrow.train import Trainer

            trainer = Trainer(self.run_dir, cfg.train, quiet=quiet, resume=resume)
        self.trainer = trainer

    # -- helpers for strategies ------------------------------------------------------------------
    def subset(self, split: str, data_index: int) -> Any:
        """D_i of ``split`` ("train", "val" or "test"; "val" is None without a validation split): the first K_i classes of the run's seeded class order.

        The order depends only on ``data.seed``, so each subset is built on its own (one kept per split:
        a large data set is never held in memory once per stage).
        """
        from netgrow.data import nested_subsets

        key = (split, data_index)
        if split not in self._data:
            return None
        if key not in self._subsets:
            self._subsets = {k: v for k, v in self._subsets.items() if k[0] != split}
            k = self.class_counts[data_index]
            self._subsets[key] = nested_subsets(self._data[split], [k], seed=self.cfg.data.seed)[0]
        return self._subsets[key]

    def create(self, arch: str, classes: int, width: float, seed_offset: int = 0) -> nn.Module:
        """A fresh netgrow model, initialised from ``seed + seed_offset`` (reproducible on resume)."""
        from netgrow import models

        size = list(self.input_shape[1:]) or [1]
        with seeded(self.cfg.seed * 1000 + seed_offset):
            model = models.create(arch, num_classes=classes, width=width, in_channels=self.input_shape[0],
                                  input_size=size)
        if self.cfg.model.init == "he":
            from netgrow.models.init import he_init

            model = he_init(model, seed=self.cfg.seed * 1000 + seed_offset)
        return model

    def example_for(self, model: nn.Module) -> torch.Tensor:
        """The example input on the model's device and dtype (growth ops need it)."""
        p = next(model.parameters(), None)
        return self.example_input if p is None else self.example_input.to(device=p.device, dtype=p.dtype)

    def batches(self, data_index: int, model: nn.Module, n_batches: int = 4, batch_size: int = 128) -> list[torch.Tensor]:
        """A few deterministic input batches of subset ``data_index`` (BatchNorm statistics of new layers)."""
        ds = self.subset("train", data_index)
        gen = torch.Generator().manual_seed(self.cfg.seed + 17 * data_index)
        n = min(len(ds), n_batches * batch_size)
        idx = torch.randperm(len(ds), generator=gen)[:n]
        ref = self.example_for(model)
        if hasattr(ds, "data") and hasattr(ds, "normalize"):
            x = ds.normalize(ds.data[idx])
        else:
            x = torch.stack([ds[int(i)][0] for i in idx])
        x = x.to(device=ref.device, dtype=ref.dtype)
        return list(x.split(batch_size))

    def run_stage(self, index: int, stage: Stage, model: nn.Module, *, carry_from: Any = None,
                  trainable: Callable[[str], bool] | None = None, masks: dict[str, torch.Tensor] | None = None,
                  extra: dict[str, Any] | None = None, schedule_role: str = "whole") -> Any:
        """Train ``model`` as stage ``index`` of this run; returns the Trainer's StageResult."""
        info = {
            "strategy": self.cfg.strategy,
            "classes": stage.classes,
            "arch": stage.arch,
            "width": stage.width,
            "class_order": self.class_order[: stage.classes],
            **stage.info,
        }
        log.info("stage %d (%s): %s width %g, %d classes, <= %d epochs", index, stage.name, stage.arch,
                 stage.width, stage.classes, stage.epochs)
        result = self.trainer.run_stage(
            index, stage.name, model, self.subset("train", stage.data_index), self.subset("test", stage.data_index),
            epochs=stage.epochs, lr=stage.lr, stopping=stage.stopping, carry_from=carry_from,
            trainable=trainable, masks=masks, info=info, val_set=self.subset("val", stage.data_index),
            schedule_role=schedule_role,
        )
        self.records.append(StageRecord(stage, result, dict(extra or {})))
        return result

    # -- summary ----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The run summary: per-stage rows and totals; ``M_total`` = Σ stage meter M."""
        stages = []
        for i, rec in enumerate(self.records):
            r, st = rec.result, rec.stage
            meter = dict(r.meter)
            stages.append({
                "stage": i,
                "name": st.name,
                "classes": st.classes,
                "arch": st.arch,
                "width": st.width,
                "test_acc": float(r.test_acc),
                "epochs": len(r.history),
                "params": int(r.params),
                "macs_per_sample": int(meter.get("macs_per_sample", 0)),
                "M": int(meter.get("M", 0)),
                "samples": int(meter.get("samples", 0)),
                "iterations": int(meter.get("iterations", 0)),
                "train_flops": int(meter.get("train_flops", 0)),
                "wall_time": float(meter.get("wall_time", 0.0)),
                "peak_memory": int(meter.get("peak_memory", 0)),
                **rec.extra,
            })
        last = stages[-1] if stages else {}
        return {
            "name": self.cfg.name,
            "strategy": self.cfg.strategy,
            "stages": stages,
            "M_total": sum(s["M"] for s in stages),
            "train_flops_total": sum(s["train_flops"] for s in stages),
            "wall_time_total": sum(s["wall_time"] for s in stages),
            "epochs_total": sum(s["epochs"] for s in stages),
            "samples_total": sum(s["samples"] for s in stages),
            "final": {k: last.get(k) for k in ("test_acc", "params", "macs_per_sample", "arch", "classes", "width")},
            **({"extra": self.extra} if self.extra else {}),
        }

    def write_summary(self) -> dict[str, Any]:
        from netgrow.train.metrics import write_json_atomic

        summary = self.summary()
        if is_main_process():
            write_json_atomic(self.run_dir / SUMMARY, summary)
        return summary
