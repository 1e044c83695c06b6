"""Checks that need the machine and the data, run after the config parsed and before a run directory exists.

:func:`validate_resources` checks ``train.device`` on this machine, loads the data set, resolves the
class schedule against it, checks ``train.batch_size`` against every stage's (limited) training subset
and that every test subset is non-empty, and builds the strategy's first models on a real input. Each
failure is a ``ConfigError`` naming the key that caused it (``train.device``, ``data.limit_train``, ...).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from netgrow.errors import ConfigError
from netgrow.strategies.experiment import ExperimentConfig
from netgrow.strategies.registry import get_strategy


def resolve_schedule(schedule: tuple[int | float, ...], num_classes: int, source: str = "<dict>") -> list[int]:
    """Class counts per stage for a data set with ``num_classes`` classes (fractions rounded)."""
    if not schedule:
        return [num_classes]
    if isinstance(schedule[0], float):
        counts = [max(1, round(f * num_classes)) for f in schedule]
        if any(b <= a for a, b in zip(counts, counts[1:])):
            raise ConfigError(f"{source}: data.schedule = {list(schedule)!r} rounds to {counts} classes of "
                              f"{num_classes}, not strictly increasing; allowed: fractions further apart")
        return counts
    counts = [int(c) for c in schedule]
    if counts[-1] > num_classes:
        raise ConfigError(f"{source}: data.schedule = {counts!r}: the data set has only {num_classes} classes; "
                          f"allowed: increasing class counts <= {num_classes}")
    return counts


def check_device(cfg: ExperimentConfig) -> None:
    """``train.device`` must exist on this machine (``"cuda"`` without a GPU is refused here, not mid-run)."""
    import torch

    device = cfg.train.device
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
        if count == 0 or index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise ConfigError(f"{cfg.source}: train.device = {device!r}: this machine has {have}; allowed: "
                              f"'auto' (a GPU when present, else the CPU) or 'cpu'"
                              + (f" or cuda:0..cuda:{count - 1}" if count else ""))
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"{cfg.source}: train.device = 'mps': MPS is not available on this machine; "
                          "allowed: 'auto' or 'cpu'")


def validate_resources(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Any, Any]:
    """Check the device, load the data set and resolve the class schedule against it.

    Returns ``(config with resolved schedule, train set, test set)``; raises ``ConfigError`` naming the
    key (``data.root``, ``train.device``, ``train.batch_size``, ...). Writes nothing.
    """
    from netgrow import data as ngdata
    from netgrow.errors import DataError

    check_device(cfg)
    try:
        train, test = ngdata.load(cfg.data.name, root=cfg.data.root)
    except DataError as exc:
        raise ConfigError(f"{cfg.source}: data.root = {cfg.data.root!r} (data.name = {cfg.data.name!r}): {exc}") from None
    return resolve_with_data(cfg, train, test), train, test


def resolve_with_data(cfg: ExperimentConfig, train: Any, test: Any = None) -> ExperimentConfig:
    """Resolve the class schedule against a loaded training set, check every stage's (limited) data
    against the batch size and the first models against the inputs (for callers that load the data once
    for many configs, e.g. the benchmarks)."""
    counts = resolve_schedule(cfg.data.schedule, int(train.num_classes), cfg.source)
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, schedule=tuple(counts)))
    check_stage_data(cfg, train, test, counts)
    shape = tuple(train[0][0].shape)
    check_augment(cfg, shape)
    check_models(cfg, shape, counts[-1])
    return cfg


def check_augment(cfg: ExperimentConfig, shape: tuple[int, ...]) -> None:
    """``train.augment`` must suit the data (crops and flips need images)."""
    from netgrow.data.transforms import resolve_augment
    from netgrow.errors import NetgrowError

    if cfg.train.augment is None:
        return
    try:
        resolve_augment(cfg.train.augment, shape)
    except NetgrowError as exc:
        raise ConfigError(f"{cfg.source}: train.augment = {cfg.train.augment!r}: {cfg.data.name} inputs have shape "
                          f"{shape} ({exc}); allowed: omit augment for data that are not images") from None


def check_stage_data(cfg: ExperimentConfig, train: Any, test: Any, counts: list[int]) -> None:
    """Every stage's (limited) training subset holds at least one batch; its test subset is not empty."""
    from netgrow.data import nested_subsets
    from netgrow.strategies.base import limit

    d = cfg.data
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)  # torchrun: the global batch is split over ranks
    if cfg.train.batch_size % world:
        raise ConfigError(f"{cfg.source}: train.batch_size = {cfg.train.batch_size} does not split evenly over "
                          f"{world} DDP ranks; allowed: a multiple of {world}")
    for split, ds, key, seed in (("training", train, "limit_train", d.seed), ("test", test, "limit_test", d.seed + 1)):
        if ds is None:
            continue
        n_limit = getattr(d, key)
        if hasattr(ds, "targets"):
            sizes = [len(sub) for sub in nested_subsets(limit(ds, n_limit, seed), counts, seed=d.seed)]
        else:  # a data set without labels to split by: only its (limited) size is known here
            sizes = [min(len(ds), n_limit or len(ds))] * len(counts)
        for k, n in zip(counts, sizes):
            cause = (f"data.{key} = {n_limit} leaves {n} {split} samples of the first {k} classes"
                     if n_limit is not None else f"the {split} set has {n} samples of the first {k} classes")
            if n == 0:
                raise ConfigError(f"{cfg.source}: {cause}; allowed: a larger data.{key} (or omit it)")
            if split == "training" and cfg.train.batch_size > n:
                fix = f"train.batch_size <= {n}" + (f", or a larger data.{key}" if n_limit is not None else "")
                raise ConfigError(f"{cfg.source}: train.batch_size = {cfg.train.batch_size}: {cause}, fewer than "
                                  f"one batch; allowed: {fix}")


def check_models(cfg: ExperimentConfig, shape: tuple[int, ...], classes: int) -> None:
    """Build every model the run creates from scratch on a zero input of the data's shape."""
    import torch

    from netgrow import models
    from netgrow.errors import NetgrowError

    spec = get_strategy(cfg.strategy)
    for key, arch, width in spec.first_models(cfg):
        size = list(shape[1:]) if len(shape) > 1 else [1]
        try:
            model = models.create(arch, num_classes=classes, width=width, in_channels=shape[0], input_size=size)
            with torch.no_grad():
                model.eval()(torch.zeros(1, *shape))
        except (NetgrowError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"{cfg.source}: {key} = {arch!r} cannot take {cfg.data.name} inputs of shape "
                              f"{shape}: {exc}; allowed: an architecture for {len(shape) - 1}-D inputs") from None
        if spec.check_model is not None:
            spec.check_model(cfg, model)
