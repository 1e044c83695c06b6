"""``TrainConfig``: every training hyper-parameter in one validated dataclass.

Units are in the comments. A bad value raises ``ConfigError`` at construction, naming the field, the
value and what is allowed, so a typo never reaches the training loop.

Example::

    >>> from netgrow.train import TrainConfig
    >>> cfg = TrainConfig(optimizer="adamw", lr=1e-3, schedule="cosine", warmup_epochs=1)
    >>> cfg.batch_size
    128
    >>> TrainConfig(optimizer="adam")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    netgrow.errors.ConfigError: ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from netgrow.errors import ConfigError

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("constant", "step", "cosine", "wsd", "plateau")
AMP_MODES = (None, "bf16", "fp16")


@dataclass
class TrainConfig:
    """Hyper-parameters of the Trainer (defaults: SGD 0.05, momentum 0.9, wd 5e-4, cosine, batch 128)."""

    optimizer: str = "sgd"  # "sgd" | "rmsprop" | "adamw"
    lr: float = 0.05  # peak learning rate (after warm-up)
    momentum: float = 0.9  # SGD and RMSProp momentum
    nesterov: bool = False  # SGD only; needs momentum > 0
    weight_decay: float = 5e-4  # L2 (SGD/RMSProp) or decoupled (AdamW)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    eps: float = 1e-8  # AdamW / RMSProp
    alpha: float = 0.99  # RMSProp smoothing constant
    schedule: str = "cosine"  # "constant" | "step" | "cosine" | "wsd" | "plateau" (see train/schedules.py)
    warmup_epochs: float = 0.0  # linear warm-up length in epochs (fractions allowed)
    step_size: int = 30  # "step" schedule: epochs between decays
    gamma: float = 0.1  # "step" schedule: decay factor
    min_lr: float = 0.0  # "cosine" schedule: final learning rate
    label_smoothing: float = 0.0  # cross-entropy label smoothing on the training loss
    batch_size: int = 128  # global batch (split evenly across DDP ranks)
    eval_batch_size: int = 512  # test-set batch (per rank)
    epochs: int | None = 10  # budget in epochs (None: use `steps`)
    steps: int | None = None  # budget in optimizer steps (overrides `epochs` when set)
    plateau_patience: int | None = None  # epochs without val_acc gain: stop; with "wsd"/"plateau": decay/reduce
    decay_epochs: float = 1.0  # "wsd": length of the final linear decay (epochs)
    max_reductions: int = 2  # "plateau": stop at the plateau after this many lr reductions (factor `gamma`)
    cross_stage: bool = False  # "wsd" over all stages: warm-up in the first, decay in the last, state carried
    plateau_min_delta: float = 0.0  # improvement (in accuracy, 0..1) that resets the patience
    amp: str | None = None  # None | "bf16" | "fp16" (GPU only; ignored with a log line on CPU)
    channels_last: bool = False  # GPU only
    compile: bool = False  # torch.compile the training forward
    seed: int = 0  # seeds the RNGs at the start of every stage and the data order
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    per_class: bool = False  # add per-class test accuracy to every epoch row
    augment: Any = None  # passed to the data loader (e.g. "crop_flip"); None = no augmentation
    deterministic: bool = False  # torch.use_deterministic_algorithms(True)
    drop_last: bool = False  # drop the last incomplete training batch of every epoch
    checkpoint_every: int | None = None  # also checkpoint every N steps inside an epoch (None: epoch ends only)
    log_every: int = 50  # steps between progress updates (and NaN checks on GPU)
    num_workers: int = 0  # DataLoader workers for data sets that are not in memory
    sync_batchnorm: bool = False  # DDP: BatchNorm statistics over the global batch (SyncBatchNorm), not per rank
    tensorboard: bool = False  # also log metrics rows and growth events to RUN_DIR/tensorboard (needs tensorboard)
    threads: int | None = None  # torch intra-op CPU threads (None: torch's default, which honours OMP_NUM_THREADS)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, recorded in train_config.json

    def __post_init__(self) -> None:
        self.optimizer = _choice("optimizer", str(self.optimizer).lower(), OPTIMIZERS)
        self.schedule = _choice("schedule", str(self.schedule).lower(), SCHEDULES)
        amp = self.amp.lower() if isinstance(self.amp, str) else self.amp
        if amp in ("none", "", "off", False):
            amp = None
        self.amp = _choice("amp", amp, AMP_MODES)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        _check(self.lr > 0, "lr", self.lr, "a positive number")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(not (self.nesterov and (self.momentum == 0 or self.optimizer != "sgd")), "nesterov", self.nesterov,
               "False unless optimizer='sgd' with momentum > 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", self.betas,
               "two numbers in [0, 1)")
        _check(self.eps > 0, "eps", self.eps, "a positive number")
        _check(0 <= self.alpha < 1, "alpha", self.alpha, "a number in [0, 1)")
        _check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "a number >= 0")
        _check(_is_int(self.step_size) and self.step_size >= 1, "step_size", self.step_size, "an integer >= 1")
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _check(0 <= self.min_lr <= self.lr, "min_lr", self.min_lr, f"a number in [0, lr={self.lr}]")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "a number in [0, 1)")
        _check(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(_is_int(self.eval_batch_size) and self.eval_batch_size >= 1, "eval_batch_size",
               self.eval_batch_size, "an integer >= 1")
        _check(self.epochs is None or (_is_int(self.epochs) and self.epochs >= 1), "epochs", self.epochs,
               "an integer >= 1 or None")
        _check(self.steps is None or (_is_int(self.steps) and self.steps >= 1), "steps", self.steps,
               "an integer >= 1 or None")
        _check(self.epochs is not None or self.steps is not None, "epochs", self.epochs,
               "an integer >= 1 when steps is None (a budget is needed)")
        _check(self.plateau_patience is None or (_is_int(self.plateau_patience) and self.plateau_patience >= 1),
               "plateau_patience", self.plateau_patience, "an integer >= 1 or None")
        _check(self.decay_epochs > 0, "decay_epochs", self.decay_epochs, "a number of epochs > 0")
        _check(_is_int(self.max_reductions) and self.max_reductions >= 0, "max_reductions", self.max_reductions,
               "an integer >= 0")
        _check(not (self.schedule == "plateau" and self.plateau_patience is None), "plateau_patience",
               self.plateau_patience, "an integer >= 1 with schedule='plateau' (epochs without a val gain before "
               "each reduction)")
        _check(not (self.cross_stage and self.schedule != "wsd"), "cross_stage", self.cross_stage,
               "False unless schedule='wsd' (one warm-up, a stable rate through growth, the decay in the last stage)")
        _check(self.plateau_min_delta >= 0, "plateau_min_delta", self.plateau_min_delta, "a number >= 0")
        _check(isinstance(self.device, str) and (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")),
               "device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        _check(self.checkpoint_every is None or (_is_int(self.checkpoint_every) and self.checkpoint_every >= 1),
               "checkpoint_every", self.checkpoint_every, "an integer >= 1 or None")
        _check(_is_int(self.log_every) and self.log_every >= 1, "log_every", self.log_every, "an integer >= 1")
        _check(_is_int(self.num_workers) and self.num_workers >= 0, "num_workers", self.num_workers,
               "an integer >= 0")
        _check(_is_int(self.seed), "seed", self.seed, "an integer")
        _check(self.threads is None or (_is_int(self.threads) and self.threads >= 1), "threads", self.threads,
               "an integer >= 1 or None")
        for flag in ("sync_batchnorm", "tensorboard"):
            _check(isinstance(getattr(self, flag), bool), flag, getattr(self, flag), "true or false")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. a TOML table); unknown keys raise ``ConfigError`` listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"netgrow.train.TrainConfig: unknown key(s) {unknown}; allowed keys: {sorted(known)}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise ConfigError(f"netgrow.train.TrainConfig: unknown {name} {value!r}; allowed values: {list(allowed)}")
    return value


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"netgrow.train.TrainConfig: {name}={value!r} is invalid; use {allowed}")
