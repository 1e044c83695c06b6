"""The experiment config: a TOML dict -> a typed :class:`ExperimentConfig`, validated completely before
anything runs.

A config names a strategy, the data, the model(s), the training hyper-parameters and a stopping rule::

    name = "cumulative-fmnist"
    strategy = "cumulative"          # scratch | net2net | cumulative | incremental
    seed = 0

    [data]
    name = "fashion_mnist"
    schedule = [5, 7, 10]            # class counts per stage (ints, or fractions of all classes)

    [model]
    width = 0.125

    [cumulative]                     # the strategy's own section, parsed by its module
    archs = ["vgg11", "vgg16", "vgg19"]

    [train]                          # any field of netgrow.train.TrainConfig
    lr = 0.05

``[train]`` is read generically from the fields of ``TrainConfig`` (types from its annotations, ranges
from its own checks); each strategy's section is parsed by the strategy itself (the registry in
``netgrow.strategies.registry``). Every error is a ``ConfigError`` whose message names the key, the bad
value and the allowed values (docs/cli.md is the full reference). ``netgrow.strategies.resources`` then
checks what needs the machine and the data -- still before a run directory is created.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netgrow.errors import ConfigError
from netgrow.strategies.registry import ParseContext, get_strategy, strategy_names
from netgrow.strategies.schema import Section, build, parse_fields
from netgrow.train.config import TrainConfig

STOPPING_RULES = ("budget", "plateau", "angle")


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: which data set, where, and the class schedule (nested subsets D1 ⊂ D2 ⊂ ...)."""

    name: str
    root: str | None = None
    schedule: tuple[int | float, ...] = ()  # () = all classes in one stage
    seed: int = 0  # class order (netgrow.data.nested_subsets)
    limit_train: int | None = None  # keep at most this many training images (seeded, for quick runs)
    limit_test: int | None = None
    val_fraction: float = 0.1  # stratified validation hold-out of the training set; every decision reads it


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the final (scratch, incremental) architecture and the default width."""

    arch: str | None = None
    width: float = 1.0
    init: str = "default"  # "default" (PyTorch's) | "he" (Kaiming normal, fan_out; netgrow.models.init)


@dataclass(frozen=True)
class StoppingConfig:
    """``[stopping]``: when a stage ends before its epoch budget."""

    rule: str = "budget"
    patience: int = 3
    min_delta: float = 0.0
    ws: int = 3
    gamma: float = 0.5
    min_epochs: int = 0


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment, validated. ``to_dict()`` is the resolved config written to RUN_DIR/config.json."""

    name: str
    strategy: str
    seed: int
    out: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    stopping: StoppingConfig
    options: Any = None  # the strategy's own options dataclass (None for scratch)
    source: str = "<dict>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved config (tuples become lists)."""
        d = {
            "name": self.name,
            "strategy": self.strategy,
            "seed": self.seed,
            "out": self.out,
            "data": _plain(dataclasses.asdict(self.data)),
            "model": _plain(dataclasses.asdict(self.model)),
            "train": _plain(self.train.to_dict()),
            "stopping": _plain(dataclasses.asdict(self.stopping)),
        }
        if self.options is not None:
            d[self.strategy] = _plain(dataclasses.asdict(self.options))
        return d

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    def defaults(self) -> dict[str, Any]:
        """``{"train.lr": 0.05, ...}``: the default of every section field (JSON-ready), so a run directory
        written before a field existed still resumes (the missing key meant the default)."""
        sections: dict[str, Any] = {"data": DataConfig, "model": ModelConfig, "stopping": StoppingConfig,
                                    "train": TrainConfig}
        if self.options is not None:
            sections[self.strategy] = type(self.options)
        out = {}
        for section, cls in sections.items():
            for f in dataclasses.fields(cls):
                if f.default is not dataclasses.MISSING:
                    out[f"{section}.{f.name}"] = _plain(f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    out[f"{section}.{f.name}"] = _plain(f.default_factory())
        return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------- model name helpers


def known_models() -> tuple[str, ...]:
    """The model names ``netgrow.models.create`` accepts."""
    from netgrow.models import list_models

    return tuple(list_models())


def family_depth(arch: str) -> tuple[str, int]:
    """``"vgg16" -> ("vgg", 16)``; names without a depth (mlp, cnn1d) have depth 0."""
    m = re.fullmatch(r"([a-z_]+?)(\d+)", arch)
    if m is None or arch == "cnn1d":
        return arch, 0
    return m.group(1), int(m.group(2))


def check_growth(archs: list[str], widths: list[float], key: str, source: str) -> None:
    """Each architecture must be the same family as, and at least as deep and wide as, the one before."""
    for i in range(1, len(archs)):
        (fa, da), (fb, db) = family_depth(archs[i - 1]), family_depth(archs[i])
        if fa != fb or db < da or (da == db == 0 and archs[i] != archs[i - 1]):
            raise ConfigError(
                f"{source}: {key} = {archs!r}: the architecture schedule must grow: {archs[i]!r} cannot be "
                f"grown from {archs[i - 1]!r}; allowed: the same family with non-decreasing depth "
                f"(e.g. vgg11 -> vgg16 -> vgg19, resnet20 -> resnet32)"
            )
        if widths[i] < widths[i - 1]:
            raise ConfigError(
                f"{source}: widths = {widths!r}: the width schedule must not shrink ({widths[i]} after "
                f"{widths[i - 1]} at stage {i}); allowed: non-decreasing widths (use prune to shrink)"
            )


def single_stage(data: DataConfig, strategy: str, source: str) -> None:
    """Strategies that train on one class set refuse a multi-stage ``data.schedule``."""
    if len(data.schedule) > 1:
        raise ConfigError(f"{source}: data.schedule = {list(data.schedule)!r}: strategy {strategy!r} trains on one "
                          f"class set; allowed: a single class count (e.g. [10]) or omit it for all classes")


def require_arch(model: ModelConfig, strategy: str, source: str, what: str = "") -> str:
    """``model.arch``, required by ``strategy``."""
    if model.arch is None:
        raise ConfigError(f"{source}: missing required key model.arch{what} for strategy {strategy!r}; "
                          f"allowed: {', '.join(known_models())}")
    return model.arch


# ------------------------------------------------------------------------------------------- parsing


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a config dict (as read from TOML) and return the typed config."""
    top = Section(raw, "", source)
    names = strategy_names()
    strategy = top.str_("strategy", choices=names)
    name = top.str_("name", default=strategy)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise top.fail("name", name, "must be usable as a directory name", "letters, digits, _ . + -")
    seed = top.int_("seed", default=0, lo=0)
    out = top.str_("out", default=str(Path("runs") / name))

    data = _parse_data(top.sub("data", required=True))
    model_s = top.sub("model")
    model = ModelConfig(
        arch=model_s.str_("arch", default=None, choices=known_models()),
        width=model_s.float_("width", default=1.0, lo=0.0, hi=64.0, lo_open=True),
        init=model_s.str_("init", default="default", choices=("default", "he")),
    )
    model_s.done()
    train_s = top.sub("train")
    train = build(train_s, TrainConfig, parse_fields(train_s, TrainConfig, defaults={"seed": seed}))
    _check_augment(train, train_s)
    stop_s = top.sub("stopping")
    stopping = StoppingConfig(
        rule=stop_s.str_("rule", default="budget", choices=STOPPING_RULES),
        patience=stop_s.int_("patience", default=3, lo=1),
        min_delta=stop_s.float_("min_delta", default=0.0, lo=0.0),
        ws=stop_s.int_("ws", default=3, lo=2),
        gamma=stop_s.float_("gamma", default=0.5, lo=0.0, hi=1.0),
        min_epochs=stop_s.int_("min_epochs", default=0, lo=0),
    )
    stop_s.done()

    spec = get_strategy(strategy)
    for other in names:
        other_section = get_strategy(other).section if other != strategy else None
        if other_section and other_section in raw and other_section != spec.section:
            raise top.fail(other_section, "[table]", f"section [{other_section}] does not apply to strategy "
                           f"{strategy!r}", f"[{spec.section}]" if spec.section else "no strategy section")
    ctx = ParseContext(data=data, model=model, train=train, source=source)
    section = top.sub(spec.section, required=spec.section_required) if spec.section else None
    options = spec.parse(section, ctx)  # type: ignore[arg-type]
    top.done()
    _check_decisions_have_validation(data, train, stopping, spec.decides_on_validation, strategy, source)
    return ExperimentConfig(name=name, strategy=strategy, seed=seed, out=out, data=data, model=model,
                            train=train, stopping=stopping, options=options, source=source)


def _check_decisions_have_validation(data: DataConfig, train: TrainConfig, stopping: StoppingConfig,
                                     strategy_rule: str | None, strategy: str, source: str) -> None:
    """A rule that decides on accuracy needs the validation split (it never reads the test set)."""
    if data.val_fraction > 0:
        return
    deciding = [k for k, on in (
        (f"stopping.rule = {stopping.rule!r}", stopping.rule != "budget"),
        ("train.plateau_patience", train.plateau_patience is not None),
        (f"train.schedule = {train.schedule!r}", train.schedule in ("wsd", "plateau")),
        (f"strategy {strategy!r} ({strategy_rule})", strategy_rule is not None),
    ) if on]
    if deciding:
        raise ConfigError(f"{source}: data.val_fraction = 0 but {', '.join(deciding)} decides on validation accuracy; "
                          "allowed: data.val_fraction in (0, 1), e.g. 0.1 (the test set is never decided on)")


def _val_fraction(s: Section) -> float:
    v = s.raw("val_fraction", 0.1)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
        raise s.fail("val_fraction", v, "must be a fraction in [0, 1)",
                     "e.g. 0.1 (10 % of the training set held out for every decision; 0 = no validation split)")
    return float(v)


def _parse_data(s: Section) -> DataConfig:
    from netgrow.data import list_datasets

    name = s.str_("name", choices=tuple(list_datasets()))
    root = s.str_("root", default=None)
    sched_raw = s.raw("schedule", [])
    if not isinstance(sched_raw, list):
        raise s.fail("schedule", sched_raw, "must be a list of class counts",
                     "increasing positive integers, or increasing fractions in (0, 1]")
    schedule: list[int | float] = []
    for v in sched_raw:
        ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 1) or (
            isinstance(v, float) and 0.0 < v <= 1.0)
        if not ok:
            raise s.fail("schedule", sched_raw, f"bad entry {v!r}",
                         "increasing positive integers, or increasing fractions in (0, 1]")
        schedule.append(v)
    if any(b <= a for a, b in zip(schedule, schedule[1:])):
        raise s.fail("schedule", sched_raw, "the class schedule must be strictly increasing",
                     "increasing class counts, e.g. [5, 7, 10]")
    if len({type(v) for v in schedule}) > 1:
        raise s.fail("schedule", sched_raw, "mixes class counts and fractions",
                     "all integers or all fractions")
    out = DataConfig(
        name=name, root=root, schedule=tuple(schedule), seed=s.int_("seed", default=0, lo=0),
        limit_train=s.int_("limit_train", default=None, lo=1, optional=True),
        limit_test=s.int_("limit_test", default=None, lo=1, optional=True),
        val_fraction=_val_fraction(s),
    )
    s.done()
    return out


def _check_augment(train: TrainConfig, s: Section) -> None:
    from netgrow.data.transforms import AUGMENTATIONS

    if train.augment is not None and train.augment not in AUGMENTATIONS:
        raise s.fail("augment", train.augment, "unknown augmentation", ", ".join(AUGMENTATIONS))
