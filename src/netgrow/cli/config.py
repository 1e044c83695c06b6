"""Experiment configs: TOML -> typed dataclasses, validated completely before anything runs.

A config names a strategy, the data, the model(s), the training hyper-parameters and a stopping rule::

    name = "cumulative-fmnist"
    strategy = "cumulative"          # scratch | net2net | cumulative | incremental
    seed = 0

    [data]
    name = "fashion_mnist"
    schedule = [5, 7, 10]            # class counts per stage (ints, or fractions of all classes)

    [model]
    width = 0.125

    [cumulative]
    archs = ["vgg11", "vgg16", "vgg19"]

    [train]                          # any field of netgrow.train.TrainConfig
    lr = 0.05

Every error is a ``ConfigError`` whose message names the key, the bad value and the allowed values
(docs/cli.md is the full reference). ``validate_resources`` then checks what needs the disk (the data
set loads, the class schedule fits it) -- still before a run directory is created.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netgrow.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("scratch", "net2net", "cumulative", "incremental")
STOPPING_RULES = ("budget", "plateau", "angle")
NET2NET_BASELINES = ("net2net", "random_pad", "random_init")
INCREMENTAL_INITS = ("lookahead", "random")
# used only when netgrow.models / netgrow.train cannot be imported (they are written in parallel)
_FALLBACK_MODELS = ("vgg11", "vgg13", "vgg16", "vgg19", "resnet20", "resnet32", "resnet44", "resnet56",
                    "resnet110", "mlp", "cnn1d")
_FALLBACK_TRAIN_FIELDS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
                          "warmup_epochs", "step_size", "gamma", "label_smoothing", "batch_size", "epochs",
                          "steps", "plateau_patience", "plateau_min_delta", "amp", "channels_last", "compile",
                          "seed", "device", "per_class", "augment", "deterministic")


# ----------------------------------------------------------------------------------------------- schema


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
class CumulativeConfig:
    """``[cumulative]``: Algorithm 1 of Feng & Panda: one stage per entry of ``data.schedule``."""

    archs: tuple[str, ...]
    widths: tuple[float, ...]
    epochs: tuple[int, ...]
    prune: tuple[float, ...]  # prune[i]: L1 pruning ratio R applied to Net_i before growing it
    prune_mode: str = "filter"  # "filter": remove filters (widths shrink); "kernel": zero 2-D kernels, masked next stage
    zero_mask: bool = False
    zero_mask_mode: str = "all"  # "all" zeros of the inserted kernels, or only their "surround" taps
    lr_factor: float = 1.0  # lr of stages >= 2 = train.lr * lr_factor
    carry_optimizer: bool = False
    noise: float = 0.0  # Net2WiderNet noise when a stage widens


@dataclass(frozen=True)
class Net2NetConfig:
    """``[net2net]``: teacher -> student (wider and/or deeper), or one of the paper's baselines."""

    teacher_arch: str
    teacher_width: float
    student_arch: str
    student_width: float
    baseline: str = "net2net"  # net2net | random_pad | random_init
    lr_factor: float = 0.1  # student lr = teacher lr * lr_factor (Net2Net appendix A)
    noise: float = 0.01  # Net2WiderNet noise, a fraction of each weight tensor's std (breaks the copies' symmetry)
    teacher_epochs: int = 10
    student_epochs: int = 10
    carry_optimizer: bool = False


@dataclass(frozen=True)
class IncrementalConfig:
    """``[incremental]``: Istrate et al.: sub-networks added when the angle criterion fires."""

    partition: str | tuple[tuple[str, ...], ...] = "width"
    init: str = "lookahead"  # lookahead | random
    lookahead_epochs: int = 1
    ws: int = 3
    gamma: float = 0.5
    max_epochs: int = 30  # budget per sub-network phase
    min_gain: float | None = None  # stop growing when the gain (pp) per million added params is below


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment, validated. ``to_dict()`` is the resolved config written to RUN_DIR/config.json."""

    name: str
    strategy: str
    seed: int
    out: str
    data: DataConfig
    model: ModelConfig
    train: dict[str, Any]
    stopping: StoppingConfig
    options: CumulativeConfig | Net2NetConfig | IncrementalConfig | None = None
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
            "train": dict(self.train),
            "stopping": _plain(dataclasses.asdict(self.stopping)),
        }
        if self.options is not None:
            d[self.strategy] = _plain(dataclasses.asdict(self.options))
        return d

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------ key checks


class _Section:
    """Reads typed values out of one TOML table, recording which keys were used."""

    def __init__(self, table: Any, prefix: str, source: str):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{prefix}] must be a table, got {table!r}")
        self.table, self.prefix, self.source, self.used = table, prefix, source, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, value: Any, problem: str, allowed: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key(name)} = {value!r}: {problem}; allowed: {allowed}")

    def has(self, name: str) -> bool:
        return name in self.table

    def raw(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        return self.table.get(name, default)

    def str_(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> Any:
        if name not in self.table:
            if default is ...:
                raise ConfigError(f"{self.source}: missing required key {self.key(name)}"
                                  + (f"; allowed: {', '.join(choices)}" if choices else ""))
            self.used.add(name)
            return default
        v = self.raw(name)
        if not isinstance(v, str) or not v:
            raise self.fail(name, v, "must be a non-empty string", ", ".join(choices) if choices else "a string")
        if choices is not None and v not in choices:
            raise self.fail(name, v, "unknown value", ", ".join(choices))
        return v

    def int_(self, name: str, default: Any = ..., lo: int | None = None, optional: bool = False) -> Any:
        if name not in self.table:
            if default is ...:
                raise ConfigError(f"{self.source}: missing required key {self.key(name)}")
            self.used.add(name)
            return default
        v = self.raw(name)
        if optional and v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or (lo is not None and v < lo):
            raise self.fail(name, v, "must be an integer" + (f" >= {lo}" if lo is not None else ""),
                            f"integers >= {lo}" if lo is not None else "integers")
        return v

    def float_(self, name: str, default: Any = ..., lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> Any:
        if name not in self.table:
            if default is ...:
                raise ConfigError(f"{self.source}: missing required key {self.key(name)}")
            self.used.add(name)
            return default
        v = self.raw(name)
        return _check_float(v, lo, hi, lo_open, hi_open, lambda p, a: self.fail(name, v, p, a))

    def bool_(self, name: str, default: bool) -> bool:
        v = self.raw(name, default)
        if not isinstance(v, bool):
            raise self.fail(name, v, "must be a boolean", "true, false")
        return v

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            k = unknown[0]
            raise self.fail(k, self.table[k], "unknown key", ", ".join(sorted(self.used)))


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "-inf" if lo is None else f"{lo}"
    right = "inf" if hi is None else f"{hi}"
    return f"numbers in {'(' if lo_open or lo is None else '['}{left}, {right}{')' if hi_open or hi is None else ']'}"


def _check_float(v: Any, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, fail: Any) -> float:
    allowed = _interval(lo, hi, lo_open, hi_open)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise fail("must be a number", allowed)
    if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and (v > hi or (hi_open and v == hi)):
        raise fail("out of range", allowed)
    return float(v)


# ----------------------------------------------------------------------------------- model name helpers


def known_models() -> tuple[str, ...]:
    """The model names ``netgrow.models.create`` accepts."""
    try:
        from netgrow.models import list_models

        return tuple(list_models())
    except (ImportError, AttributeError):
        return _FALLBACK_MODELS


def train_fields() -> tuple[str, ...]:
    """The keys allowed in ``[train]``: the fields of ``netgrow.train.TrainConfig``."""
    try:
        from netgrow.train import TrainConfig

        return tuple(f.name for f in dataclasses.fields(TrainConfig))
    except (ImportError, AttributeError, TypeError):
        return _FALLBACK_TRAIN_FIELDS


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


# ------------------------------------------------------------------------------------------- parsing


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment file. Raises ``ConfigError`` (never writes anything)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of an experiment .toml "
                          "(examples: configs/*.toml)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a config dict (as read from TOML) and return the typed config."""
    top = _Section(raw, "", source)
    strategy = top.str_("strategy", choices=STRATEGIES)
    name = top.str_("name", default=strategy)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise top.fail("name", name, "must be usable as a directory name", "letters, digits, _ . + -")
    seed = top.int_("seed", default=0, lo=0)
    out = top.str_("out", default=str(Path("runs") / name))

    data = _parse_data(_Section(top.raw("data", None) or _missing(source, "data"), "data", source))
    model_s = _Section(top.raw("model", {}), "model", source)
    model = ModelConfig(
        arch=model_s.str_("arch", default=None, choices=known_models()),
        width=model_s.float_("width", default=1.0, lo=0.0, hi=64.0, lo_open=True),
        init=model_s.str_("init", default="default", choices=("default", "he")),
    )
    model_s.done()
    train = _parse_train(_Section(top.raw("train", {}), "train", source), seed)
    stop_s = _Section(top.raw("stopping", {}), "stopping", source)
    stopping = StoppingConfig(
        rule=stop_s.str_("rule", default="budget", choices=STOPPING_RULES),
        patience=stop_s.int_("patience", default=3, lo=1),
        min_delta=stop_s.float_("min_delta", default=0.0, lo=0.0),
        ws=stop_s.int_("ws", default=3, lo=2),
        gamma=stop_s.float_("gamma", default=0.5, lo=0.0, hi=1.0),
        min_epochs=stop_s.int_("min_epochs", default=0, lo=0),
    )
    stop_s.done()
    _check_decisions_have_validation(data, train, stopping, strategy, source)

    epochs = train.get("epochs", 10)
    options: Any = None
    for other in STRATEGIES:
        if other != strategy and other in raw and other != "scratch":
            raise top.fail(other, "[table]", f"section [{other}] does not apply to strategy {strategy!r}",
                           f"[{strategy}]" if strategy != "scratch" else "no strategy section")
    if strategy == "scratch":
        if model.arch is None:
            raise ConfigError(f"{source}: missing required key model.arch for strategy 'scratch'; "
                              f"allowed: {', '.join(known_models())}")
        _single_stage(data, "scratch", source)
    elif strategy == "cumulative":
        options = _parse_cumulative(_Section(top.raw("cumulative", None) or _missing(source, "cumulative"),
                                             "cumulative", source), data, model, epochs)
    elif strategy == "net2net":
        options = _parse_net2net(_Section(top.raw("net2net", None) or _missing(source, "net2net"), "net2net",
                                          source), model, epochs)
        _single_stage(data, "net2net", source)
    else:
        if model.arch is None:
            raise ConfigError(f"{source}: missing required key model.arch (the target network) for strategy "
                              f"'incremental'; allowed: {', '.join(known_models())}")
        options = _parse_incremental(_Section(top.raw("incremental", {}), "incremental", source), epochs)
        _single_stage(data, "incremental", source)
    top.done()
    return ExperimentConfig(name=name, strategy=strategy, seed=seed, out=out, data=data, model=model,
                            train=train, stopping=stopping, options=options, source=source)


def _check_decisions_have_validation(data: DataConfig, train: dict[str, Any], stopping: StoppingConfig,
                                     strategy: str, source: str) -> None:
    """A rule that decides on accuracy needs the validation split (it never reads the test set)."""
    if data.val_fraction > 0:
        return
    deciding = [k for k, on in (
        (f"stopping.rule = {stopping.rule!r}", stopping.rule != "budget"),
        ("train.plateau_patience", train.get("plateau_patience") is not None),
        (f"train.schedule = {train.get('schedule')!r}", train.get("schedule") in ("wsd", "plateau")),
        ("strategy 'incremental' (the angle criterion)", strategy == "incremental"),
    ) if on]
    if deciding:
        raise ConfigError(f"{source}: data.val_fraction = 0 but {', '.join(deciding)} decides on validation accuracy; "
                          "allowed: data.val_fraction in (0, 1), e.g. 0.1 (the test set is never decided on)")


def _missing(source: str, section: str) -> Any:
    raise ConfigError(f"{source}: missing required section [{section}]; see docs/cli.md for its keys")


def _parse_data(s: _Section) -> DataConfig:
    allowed = _dataset_names()
    name = s.str_("name", choices=allowed)
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


def _val_fraction(s: _Section) -> float:
    v = s.raw("val_fraction", 0.1)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
        raise s.fail("val_fraction", v, "must be a fraction in [0, 1)",
                     "e.g. 0.1 (10 % of the training set held out for every decision; 0 = no validation split)")
    return float(v)


def _dataset_names() -> tuple[str, ...] | None:
    try:
        from netgrow.data import list_datasets

        return tuple(list_datasets())
    except (ImportError, AttributeError):
        return None


def _parse_train(s: _Section, seed: int) -> dict[str, Any]:
    allowed = train_fields()
    out: dict[str, Any] = {}
    for key, value in s.table.items():
        if key not in allowed:
            raise s.fail(key, value, "unknown key", ", ".join(allowed))
        out[key] = s.raw(key)
    if "epochs" in out:
        s.int_("epochs", lo=1)
    if "batch_size" in out:
        s.int_("batch_size", lo=1)
    if "lr" in out:
        s.float_("lr", lo=0.0, lo_open=True)
    augment = out.get("augment")
    if augment is not None:
        from netgrow.data.transforms import AUGMENTATIONS

        if augment not in AUGMENTATIONS:
            raise s.fail("augment", augment, "unknown augmentation", ", ".join(AUGMENTATIONS))
    out.setdefault("seed", seed)
    _check_train_config(out, s)
    return out


def _check_train_config(values: dict[str, Any], s: _Section) -> None:
    """Let ``TrainConfig`` itself validate the values (optimizer names, schedules, ...), naming the key."""
    try:
        from netgrow.train import TrainConfig
    except ImportError:
        return
    try:
        TrainConfig(**values)
    except (ValueError, TypeError) as exc:
        bad = next((k for k in values if k in str(exc)), None)
        where = f"train.{bad} = {values[bad]!r}" if bad else f"[train] {values!r}"
        raise ConfigError(f"{s.source}: {where}: {exc}") from None


def _per_stage(s: _Section, name: str, n: int, default: Any, check: Any) -> tuple[Any, ...]:
    """A value given once (applies to every stage) or as a list with one entry per stage."""
    v = s.raw(name, default)
    values = v if isinstance(v, list) else [v] * n
    if len(values) != n:
        raise s.fail(name, v, f"needs one entry per stage ({n})", f"a single value or a list of {n}")
    for item in values:
        check(item, lambda p, a, item=item: s.fail(name, v, f"{p} ({item!r})", a))
    return tuple(values)


def _int_check(lo: int) -> Any:
    def check(x: Any, fail: Any) -> None:
        if not isinstance(x, int) or isinstance(x, bool) or x < lo:
            raise fail("must be an integer", f"integers >= {lo}")

    return check


def _parse_cumulative(s: _Section, data: DataConfig, model: ModelConfig, epochs: int) -> CumulativeConfig:
    n = len(data.schedule)
    if n < 2:
        raise ConfigError(f"{s.source}: data.schedule = {list(data.schedule)!r}: cumulative training needs "
                          f"at least two stages; allowed: an increasing list of class counts, e.g. [5, 7, 10]")
    archs = s.raw("archs", None)
    models = known_models()
    if not isinstance(archs, list) or len(archs) != n:
        raise s.fail("archs", archs, f"needs one architecture per stage of data.schedule ({n})",
                     f"a list of {n} names from {', '.join(models)}")
    for a in archs:
        if a not in models:
            raise s.fail("archs", archs, f"unknown model {a!r}", ", ".join(models))
    if model.arch is not None and model.arch != archs[-1]:
        raise ConfigError(f"{s.source}: model.arch = {model.arch!r} differs from the last entry of "
                          f"cumulative.archs ({archs[-1]!r}); allowed: omit model.arch or set it to {archs[-1]!r}")
    widths = _per_stage(s, "widths", n, model.width,
                        lambda x, fail: _check_float(x, 0.0, 64.0, True, False, fail))
    check_growth(list(archs), [float(w) for w in widths], "cumulative.archs", s.source)
    fractions = s.raw("budget_fractions", None)
    if fractions is not None:  # per-stage budgets as fractions of a total
        if s.has("epochs"):
            raise s.fail("budget_fractions", fractions, "conflicts with cumulative.epochs",
                         "either epochs (per stage) or budget_fractions with total_epochs")
        ok = isinstance(fractions, list) and len(fractions) == n and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in fractions)
        if not ok:
            raise s.fail("budget_fractions", fractions, f"needs {n} positive numbers (one per stage)",
                         "e.g. [0.6, 0.2, 0.2]: stage i trains round(f_i * total_epochs) epochs")
        total = s.int_("total_epochs", default=epochs, lo=1)
        ep = tuple(max(1, round(float(f) * total)) for f in fractions)
    else:
        ep = _per_stage(s, "epochs", n, epochs, _int_check(1))
    prune_raw = s.raw("prune", 0.0)
    prune = prune_raw if isinstance(prune_raw, list) else [prune_raw] * (n - 1)
    if len(prune) != n - 1:
        raise s.fail("prune", prune_raw, f"needs one ratio per growth step ({n - 1})",
                     f"a single ratio or a list of {n - 1} ratios in [0, 1)")
    for r in prune:
        _check_float(r, 0.0, 1.0, False, True, lambda p, a: s.fail("prune", prune_raw, p, a))
    out = CumulativeConfig(
        archs=tuple(archs), widths=tuple(float(w) for w in widths), epochs=tuple(ep),
        prune=tuple(float(r) for r in prune),
        prune_mode=s.str_("prune_mode", default="filter", choices=("filter", "kernel")),
        zero_mask_mode=s.str_("zero_mask_mode", default="all", choices=("all", "surround")),
        zero_mask=s.bool_("zero_mask", False),
        lr_factor=s.float_("lr_factor", default=1.0, lo=0.0, lo_open=True),
        carry_optimizer=s.bool_("carry_optimizer", False),
        noise=s.float_("noise", default=0.0, lo=0.0),
    )
    s.done()
    return out


def _parse_net2net(s: _Section, model: ModelConfig, epochs: int) -> Net2NetConfig:
    models = known_models()
    student_arch = s.str_("student_arch", default=model.arch, choices=models)
    if student_arch is None:
        raise ConfigError(f"{s.source}: missing required key net2net.student_arch (or model.arch); "
                          f"allowed: {', '.join(models)}")
    student_width = s.float_("student_width", default=model.width, lo=0.0, hi=64.0, lo_open=True)
    teacher_arch = s.str_("teacher_arch", default=student_arch, choices=models)
    teacher_width = s.float_("teacher_width", default=student_width, lo=0.0, hi=64.0, lo_open=True)
    check_growth([teacher_arch, student_arch], [teacher_width, student_width], "net2net teacher/student",
                 s.source)
    if (teacher_arch, teacher_width) == (student_arch, student_width):
        raise ConfigError(f"{s.source}: net2net.student_arch/student_width = ({student_arch!r}, {student_width}) "
                          f"equal the teacher's; allowed: a wider (student_width > teacher_width) and/or deeper "
                          f"student")
    baseline = s.str_("baseline", default="net2net", choices=NET2NET_BASELINES)
    if baseline == "random_pad" and student_width == teacher_width:
        raise s.fail("baseline", baseline, "random_pad is the baseline of Net2WiderNet and needs "
                     "student_width > teacher_width", "net2net, random_init (or widen the student)")
    out = Net2NetConfig(
        teacher_arch=teacher_arch, teacher_width=teacher_width, student_arch=student_arch,
        student_width=student_width, baseline=baseline,
        lr_factor=s.float_("lr_factor", default=0.1, lo=0.0, lo_open=True),
        noise=s.float_("noise", default=0.01, lo=0.0),
        teacher_epochs=s.int_("teacher_epochs", default=epochs, lo=1),
        student_epochs=s.int_("student_epochs", default=epochs, lo=1),
        carry_optimizer=s.bool_("carry_optimizer", False),
    )
    s.done()
    return out


def _parse_incremental(s: _Section, epochs: int) -> IncrementalConfig:
    part = s.raw("partition", "width")
    if isinstance(part, str):
        if part != "width":
            raise s.fail("partition", part, "unknown partition rule",
                         "'width' (consecutive layers of the same width) or a list of lists of module names")
        partition: Any = part
    else:
        if not isinstance(part, list) or len(part) < 2 or not all(
                isinstance(g, list) and g and all(isinstance(n, str) and n for n in g) for g in part):
            raise s.fail("partition", part, "must list at least two sub-networks, each a non-empty list of "
                         "module names", "'width' or e.g. [[\"conv1\", \"layer1\"], [\"layer2\"], [\"layer3\"]]")
        partition = tuple(tuple(g) for g in part)
    min_gain = s.raw("min_gain", None)
    if min_gain is not None:
        min_gain = _check_float(min_gain, 0.0, None, False, False, lambda p, a: s.fail("min_gain", min_gain, p, a))
    out = IncrementalConfig(
        partition=partition,
        init=s.str_("init", default="lookahead", choices=INCREMENTAL_INITS),
        lookahead_epochs=s.int_("lookahead_epochs", default=1, lo=1),
        ws=s.int_("ws", default=3, lo=2),
        gamma=s.float_("gamma", default=0.5, lo=0.0, hi=1.0),
        max_epochs=s.int_("max_epochs", default=epochs, lo=1),
        min_gain=min_gain,
    )
    s.done()
    return out


def _single_stage(data: DataConfig, strategy: str, source: str) -> None:
    if len(data.schedule) > 1:
        raise ConfigError(f"{source}: data.schedule = {list(data.schedule)!r}: strategy {strategy!r} trains on one "
                          f"class set; allowed: a single class count (e.g. [10]) or omit it for all classes")


# --------------------------------------------------------------------------------- resource validation


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


def validate_resources(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Any, Any]:
    """Load the data set (the only check that needs the disk) and resolve the class schedule.

    Returns ``(config with resolved schedule, train set, test set)``; raises ``ConfigError`` naming
    ``data.root`` / ``data.name`` when the data cannot be loaded. Writes nothing.
    """
    from netgrow import data as ngdata
    from netgrow.errors import DataError

    try:
        train, test = ngdata.load(cfg.data.name, root=cfg.data.root)
    except DataError as exc:
        raise ConfigError(f"{cfg.source}: data.root = {cfg.data.root!r} (data.name = {cfg.data.name!r}): {exc}") from None
    return resolve_with_data(cfg, train), train, test


def resolve_with_data(cfg: ExperimentConfig, train: Any) -> ExperimentConfig:
    """Resolve the class schedule against a loaded training set and check the models can take its inputs
    (for callers that load the data once for many configs, e.g. the benchmarks)."""
    counts = resolve_schedule(cfg.data.schedule, int(train.num_classes), cfg.source)
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, schedule=tuple(counts)))
    _check_models(cfg, tuple(train[0][0].shape), counts[-1])
    return cfg


def _planned_models(cfg: ExperimentConfig) -> list[tuple[str, str, float]]:
    """(config key, arch, width) of every architecture the run will build from scratch."""
    o = cfg.options
    if cfg.strategy == "cumulative":
        return [("cumulative.archs", o.archs[0], o.widths[0])]
    if cfg.strategy == "net2net":
        if o.baseline == "random_init":
            return [("net2net.student_arch", o.student_arch, o.student_width)]
        return [("net2net.teacher_arch", o.teacher_arch, o.teacher_width)]
    return [("model.arch", cfg.model.arch, cfg.model.width)]


def _check_models(cfg: ExperimentConfig, shape: tuple[int, ...], classes: int) -> None:
    """Build the first model on a zero input of the data's shape (and the incremental partition)."""
    import torch

    from netgrow import models
    from netgrow.errors import NetgrowError

    for key, arch, width in _planned_models(cfg):
        size = list(shape[1:]) if len(shape) > 1 else [1]
        try:
            model = models.create(arch, num_classes=classes, width=width, in_channels=shape[0], input_size=size)
            with torch.no_grad():
                model.eval()(torch.zeros(1, *shape))
        except (NetgrowError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"{cfg.source}: {key} = {arch!r} cannot take {cfg.data.name} inputs of shape "
                              f"{shape}: {exc}; allowed: an architecture for {len(shape) - 1}-D inputs") from None
        if cfg.strategy == "incremental":
            from netgrow.strategies.incremental import partition

            try:
                partition(model, cfg.options.partition)
            except NetgrowError as exc:
                raise ConfigError(f"{cfg.source}: incremental.partition = {cfg.options.partition!r}: {exc}") from None
