"""The Trainer: one engine for every growth strategy, so "grown vs scratch" runs on the same meter.

A strategy is a sequence of stages with growth between them; each stage is one call::

    trainer = Trainer("runs/demo", TrainConfig(epochs=10), resume=False)
    r0 = trainer.run_stage(0, "vgg11", model, train5, test5, info={"classes": 5})
    bigger = netgrow.widen(r0.model, 2.0, example_input=x)
    r1 = trainer.run_stage(1, "vgg11x2", bigger, train10, test10, lr=0.005,   # Net2Net: 1/10 of the lr
                           carry_from=(r0.model, r0.optimizer_state))

Per stage the Trainer validates the inputs, counts the MACs per sample, trains for the budget (epochs
or optimizer steps) or until the stopping rule fires, evaluates every epoch, appends rows to
``RUN_DIR/metrics.jsonl``, writes an epoch checkpoint (atomic) and at the end the stage checkpoint
``RUN_DIR/stages/stage{i}.safetensors`` (readable by ``netgrow.load``) with its summary ``stage{i}.json``.

Next-token models (logits ``(batch, T, vocab)`` for targets ``(batch, T)``, e.g. a GPT on
``netgrow.data.load("fortunes")``) train as they are: each token is a sample, MACs are per token and the
rows add bits per character (``netgrow.train.lm``).

Resume (``Trainer(..., resume=True)`` and the strategy calling the same stages again): a stage whose
summary exists is not retrained -- its weights are loaded into the model passed in, its optimizer state
and history are returned and the RNG states saved at its end restored, so growth ops that draw random
numbers afterwards draw the same ones; the stage in progress continues from the last checkpoint with
its optimizer, schedule position, RNG states and data position. On CPU with ``deterministic=True`` the
result is bitwise that of an uninterrupted run.

Under ``torchrun`` the same code runs DistributedDataParallel (see :mod:`netgrow.train.distributed`);
``batch_size`` is the global batch, split evenly across ranks; only rank 0 writes files and logs.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from netgrow.data.loader import make_loader
from netgrow.errors import ConfigError, NetgrowTypeError, RunInterrupted, StorageError, TrainingError
from netgrow.ops.param_map import ParamMap
from netgrow.ops.param_map import param_map as get_param_map
from netgrow.ops.verify import eval_mode
from netgrow.spec import growth_log
from netgrow.train import checkpoint as ckpt
from netgrow.train import distributed as ddp
from netgrow.train import meter as meters
from netgrow.train import lm, safe_io, validate
from netgrow.train.carry import carry_optimizer_state
from netgrow.train.config import TrainConfig
from netgrow.train.interrupt import requested as stop_signal
from netgrow.train.macs import count_macs
from netgrow.train.loop import EpochSums, NonFiniteLoss, StepContext, apply_masks, evaluate, train_steps
from netgrow.train.metrics import MetricsWriter, read_json, write_json_atomic, write_train_config
from netgrow.train.optim import build_optimizer
from netgrow.train.schedules import build_schedule
from netgrow.train.progress import Progress, format_epoch
from netgrow.train.serialization import save as save_model
from netgrow.train.stopping import Plateau, StoppingRule
from netgrow.train.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)

StoppingFn = Callable[[list[dict[str, Any]]], bool]


@dataclass
class StageResult:
    """What one stage produced. ``model`` is the trained, unwrapped module on the training device."""

    model: nn.Module
    optimizer_state: dict[str, Any]  # optimizer.state_dict(); param_groups carry "param_names"
    history: list[dict[str, Any]]  # the stage's epoch rows (as in metrics.jsonl)
    meter: dict[str, Any]  # samples, iterations, macs_per_sample, M, train_flops, wall_time, peak_memory
    test_acc: float | None  # test accuracy after the last epoch (0..1)
    params: int  # number of parameters of the model
    stage: int = 0
    name: str = ""
    macs_per_sample: int = 0
    stopped_by: str = "budget"  # "budget" | "stopping" (the rule fired) | "schedule" (its decay ended)
    resumed: bool = False  # True when loaded from a finished stage's checkpoint instead of trained
    summary: dict[str, Any] = field(default_factory=dict)  # the stage{i}.json content


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


class Trainer:
    """Runs training stages into ``run_dir``; see the module docstring.

    ``quiet=True`` silences progress output; ``resume=True`` continues a run killed earlier (without it,
    a run directory that already holds training output is refused rather than overwritten).
    ``stream``: where progress goes (default ``sys.stderr``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: TrainConfig | None = None,
        quiet: bool = False,
        resume: bool = False,
        stream: Any = None,
    ) -> None:
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise NetgrowTypeError(f"netgrow.train.Trainer: config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.device = ddp.resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = ddp.init(self.device)
        self.is_main = self.dist.is_main
        leftovers = []
        if self.is_main and not resume:
            leftovers = [p.name for p in (self.metrics_path, self.checkpoint_dir, self.stages_dir) if p.exists()]
        if ddp.broadcast_flag(bool(leftovers), self.dist, self.device):  # every rank stops, none hangs
            raise ConfigError(
                f"netgrow.train.Trainer: run directory {str(self.run_dir)!r} already holds training output "
                f"{leftovers or ''}; pass resume=True to continue that run, or use a new run directory"
            )
        self._setup_determinism()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        # TensorBoard (optional): every metrics row, and a growth event at each stage start
        self.tensorboard = TensorBoardLog(self.run_dir / "tensorboard") if config.tensorboard and self.is_main else None
        self.metrics = MetricsWriter(
            self.metrics_path, enabled=self.is_main, also=self.tensorboard.row if self.tensorboard else None
        )
        self._growth_log_len = 0  # growth records of the previous stage's model (to name this stage's growth)
        self.progress = Progress(enabled=self.is_main and not quiet, stream=stream)
        self.totals: dict[str, Any] = {"M": 0, "samples": 0, "iterations": 0, "wall_time": 0.0, "epochs": 0}
        self.stage_summaries: list[dict[str, Any]] = []
        if config.amp is not None and self.device.type != "cuda":
            log.info("amp=%r is GPU-only; training in float32 on %s", config.amp, self.device)
        if config.channels_last and self.device.type != "cuda":
            log.info("channels_last is GPU-only; ignored on %s", self.device)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_train_config(self.run_dir, self._resolved_config())

    # ------------------------------------------------------------------ paths and setup
    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def stages_dir(self) -> Path:
        return self.run_dir / "stages"

    def _resolved_config(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "resolved_device": str(self.device),
            "world_size": self.dist.world_size,
            "per_rank_batch_size": self.config.batch_size // self.dist.world_size,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),  # float sums depend on it: part of reproducing a run
        }

    def _setup_determinism(self) -> None:
        # the switch itself is flipped around each stage (see _StageRun.execute); here only what must
        # happen before the first CUDA call
        if self.config.deterministic and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False

    # ------------------------------------------------------------------ the public entry point
    def run_stage(
        self,
        stage: int,
        name: str,
        model: nn.Module,
        train_set: Dataset,
        test_set: Dataset | None,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        lr: float | None = None,
        stopping: StoppingFn | None = None,
        carry_from: tuple[Any, ...] | None = None,
        trainable: Callable[[str], bool] | None = None,
        masks: dict[str, torch.Tensor] | None = None,
        info: dict[str, Any] | None = None,
        val_set: Dataset | None = None,
        schedule_role: str = "whole",
    ) -> StageResult:
        """Train ``model`` for one stage and return the result (see the module docstring).

        ``epochs``/``steps``: the budget (default: the config's; with both, whichever ends first).
        ``lr``: this stage's peak learning rate (default ``config.lr``). ``stopping``: a rule
        ``(history) -> bool`` asked after every epoch (the config's plateau rule is added when
        ``plateau_patience`` is set). ``carry_from=(old_model, old_optimizer_state[, param_map])`` carries
        the optimizer state through ``param_map`` (default: the map the last growth op attached to
        ``model``); None starts a fresh optimizer. ``trainable(name) -> bool`` freezes the others.
        ``masks``: ``{param name: bool tensor}`` of entries held at exactly zero. ``info`` is merged into
        every metrics row and the stage summary. ``val_set``: the validation hold-out evaluated every epoch
        (``val_loss``/``val_acc`` in the rows); stopping rules and schedules read it, the test set is only
        reported. ``schedule_role``: the stage's place in a cross-stage schedule (``"first"``, ``"middle"``,
        ``"last"``; see ``netgrow.train.schedules.build_schedule``).
        """
        cfg = self.config
        where = f"netgrow.train: stage {stage} ({name})"
        if not isinstance(model, nn.Module):
            raise NetgrowTypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(stage, int) or isinstance(stage, bool) or stage < 0:
            raise ConfigError(f"{where}: stage={stage!r} is invalid; use an integer >= 0")
        validate.check_budget(where, epochs, steps)
        if lr is not None and not lr > 0:
            raise ConfigError(f"{where}: lr={lr!r} is invalid; use a positive number")
        info = dict(info or {})
        epochs, steps = self._budget(epochs, steps)
        lr = cfg.lr if lr is None else float(lr)

        model.to(self.device)
        validate.check_datasets(where, train_set, test_set, cfg.batch_size, self.dist.world_size)
        example = validate.example_input(where, train_set, self.device)
        num_outputs = validate.output_size(where, model, example)
        validate.check_labels(where, {"training": train_set, "test": test_set, "validation": val_set}, num_outputs)
        mask_pairs = validate.check_masks(where, model, masks)

        if self.resume:
            summary_path = ckpt.stage_paths(self.stages_dir, stage)[2]
            if summary_path.is_file():
                return self._load_finished(stage, name, model)

        run = _StageRun(self, stage, name, model, train_set, test_set, epochs, steps, lr, stopping,
                        carry_from, trainable, mask_pairs, info, example, num_outputs, where, val_set,
                        schedule_role)  # fmt: skip
        return run.execute()

    def _budget(self, epochs: int | None, steps: int | None) -> tuple[int | None, int | None]:
        if epochs is None and steps is None:
            if self.config.steps is not None:
                return None, self.config.steps
            return self.config.epochs, None
        return epochs, steps

    # ------------------------------------------------------------------ resume of a finished stage
    def _load_finished(self, stage: int, name: str, model: nn.Module) -> StageResult:
        model_path, state_path, summary_path = ckpt.stage_paths(self.stages_dir, stage)
        summary = read_json(summary_path)
        tensors, meta = safe_io.read(model_path)
        prefix = meta.get("prefix", "")
        ckpt.load_model_tensors(
            model, {ckpt.MODEL + k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, str(model_path)
        )
        st_tensors, st_meta = safe_io.read(state_path)
        optimizer_state = ckpt.optimizer_from_tensors(st_tensors, st_meta["optimizer"])
        ckpt.set_rng_state(st_tensors, st_meta["rng"])
        self._add_totals(summary["meter"], int(summary.get("epochs", len(summary.get("history", [])))))
        self.stage_summaries.append(summary)
        self._growth_log_len = len(growth_log(model))
        self.progress.line(f"stage {stage} ({name}): finished earlier, loaded from {model_path}")
        return StageResult(
            model=model,
            optimizer_state=optimizer_state,
            history=summary.get("history", []),
            meter=summary["meter"],
            test_acc=summary.get("test_acc"),
            params=summary.get("params", sum(p.numel() for p in model.parameters())),
            stage=stage,
            name=summary.get("name", name),
            macs_per_sample=summary.get("macs_per_sample", 0),
            stopped_by=summary.get("stopped_by", "budget"),
            resumed=True,
            summary=summary,
        )

    def _growth_event(self, stage: int, name: str, model: nn.Module, params: int) -> None:
        """Log the start of a stage to TensorBoard: the growth ops since the previous stage's model."""
        if self.tensorboard is None:
            return
        before = self.stage_summaries[-1].get("params") if self.stage_summaries else None
        self.tensorboard.growth(stage, name, before, params, growth_log(model)[self._growth_log_len :])

    def _add_totals(self, meter: dict[str, Any], epochs: int) -> None:
        for k in ("M", "samples", "iterations", "wall_time"):
            self.totals[k] += meter.get(k, 0)
        self.totals["epochs"] += epochs


class _StageRun:
    """The state of one stage being trained (built by ``Trainer.run_stage``)."""

    def __init__(
        self,
        trainer: Trainer,
        stage: int,
        name: str,
        model: nn.Module,
        train_set: Dataset,
        test_set: Dataset | None,
        epochs: int | None,
        steps: int | None,
        lr: float,
        stopping: StoppingFn | None,
        carry_from: tuple[Any, ...] | None,
        trainable: Callable[[str], bool] | None,
        masks: list[tuple[nn.Parameter, torch.Tensor]],
        info: dict[str, Any],
        example: torch.Tensor,
        num_outputs: int,
        where: str,
        val_set: Dataset | None = None,
        schedule_role: str = "whole",
    ) -> None:
        self.t = trainer
        self.cfg = cfg = trainer.config
        self.stage, self.name, self.model = stage, name, model
        self.info, self.where, self.num_outputs = info, where, num_outputs
        self.epochs, self.steps, self.lr = epochs, steps, lr
        self.masks = masks
        self.device = trainer.device
        self.dist = trainer.dist
        self.totals_before = dict(trainer.totals)
        self.rule = self._rule(stopping, val_set is not None)

        named = validate.trainable_params(where, model, trainable)
        self.named_trainable = named
        if masks:
            apply_masks(masks)  # masked entries are exactly zero from the first step (and MACs skip them)
        mask_dict = {n: m for n, p in model.named_parameters() for q, m in masks if q is p}
        # next-token models count one sample per predicted token (netgrow.train.lm)
        with eval_mode(model), torch.no_grad():
            self.tokens = lm.predictions_per_sample(model(example))
        self.macs_per_sample = int(count_macs(model, example, masks=mask_dict or None)) // self.tokens
        self.params = sum(p.numel() for p in model.parameters())
        self.optimizer = build_optimizer(named, cfg, lr)
        self.carry_from = carry_from

        world, rank = self.dist.world_size, self.dist.rank
        self.seed = cfg.seed + stage
        self.train_loader = make_loader(
            train_set, cfg.batch_size // world, shuffle=True, seed=self.seed, device=self.device,
            augment=cfg.augment, drop_last=cfg.drop_last, rank=rank, world_size=world, num_workers=cfg.num_workers,
        )  # fmt: skip
        self.test_loader, self.test_valid = self._eval_loader(test_set, cfg)
        self.val_loader, self.val_valid = self._eval_loader(val_set, cfg)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{where}: the training loader has no batch (batch_size={cfg.batch_size}, drop_last="
                f"{cfg.drop_last}, {len(train_set)} samples); lower batch_size or set drop_last=False"  # type: ignore[arg-type]
            )
        budget = [b for b in (epochs * self.steps_per_epoch if epochs else None, steps) if b is not None]
        self.total_steps = min(budget)
        self.schedule = build_schedule(cfg, self.steps_per_epoch, self.total_steps, lr, schedule_role)
        self.scaler = None
        if cfg.amp == "fp16" and self.device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")
        self.meter = meters.ComputeMeter(self.macs_per_sample, self.device)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps of this stage
        self.sums = EpochSums.zeros(self.device)
        self.done = False
        self.stopped_by = "budget"
        self.last_ckpt: Path | None = None

    def _eval_loader(self, dataset: Any, cfg: TrainConfig) -> tuple[Any, int | None]:
        """An unshuffled loader over this rank's shard of ``dataset`` and the shard's size (None, None without one)."""
        if dataset is None:
            return None, None
        world, rank = self.dist.world_size, self.dist.rank
        loader = make_loader(
            dataset, cfg.eval_batch_size, shuffle=False, seed=self.seed, device=self.device,
            rank=rank, world_size=world, num_workers=cfg.num_workers,
        )  # fmt: skip
        return loader, len(range(rank, len(dataset), world))

    def _rule(self, stopping: StoppingFn | None, has_val: bool) -> StoppingRule | None:
        rules: list[StoppingRule] = []
        adaptive = self.cfg.schedule in ("wsd", "plateau")  # the schedule itself acts on the plateau
        if (self.cfg.plateau_patience is not None or adaptive) and not has_val:
            raise ConfigError(
                f"{self.where}: plateau_patience / schedule={self.cfg.schedule!r} decide on validation accuracy "
                "but no val_set was given; pass val_set=... (netgrow.data.split) or set [data] val_fraction"
            )
        if self.cfg.plateau_patience is not None and not adaptive:
            rules.append(Plateau(self.cfg.plateau_patience, self.cfg.plateau_min_delta, key="val_acc"))
        if stopping is not None:
            if not callable(stopping):
                raise NetgrowTypeError(f"{self.where}: stopping must be a callable (history) -> bool")
            rules.append(stopping)
        if not rules:
            return None
        return lambda history: any(r(history) for r in rules)

    # ------------------------------------------------------------------ orchestration
    def execute(self) -> StageResult:
        # frozen parameters (look-ahead): requires_grad off for this stage only (DDP must not sync them)
        grad_flags = {n: p.requires_grad for n, p in self.model.named_parameters()}
        keep = {id(p) for _, p in self.named_trainable}
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            for p in self.model.parameters():
                p.requires_grad_(id(p) in keep)
            if self.cfg.deterministic:
                torch.use_deterministic_algorithms(True)  # for this stage only: the setting is process-wide
            return self._execute()
        except StorageError as exc:
            raise StorageError(f"{self.where}: {exc}. {self._kept()}", exc.path, exc.os_errno) from None
        finally:
            for n, p in self.model.named_parameters():
                p.requires_grad_(grad_flags.get(n, True))
            torch.use_deterministic_algorithms(deterministic)

    def _execute(self) -> StageResult:
        t = self.t
        resumed = self._try_resume() if t.resume else False
        if not resumed:
            if t.resume and t.is_main:
                t.metrics.truncate_after(self.stage, None)
            seed_everything(self.seed)
            self._carry()
            t._growth_event(self.stage, self.name, self.model, self.params)
        t._growth_log_len = len(growth_log(self.model))
        if self.device.type == "cuda" and self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        forward = ddp.wrap(self.model, self.dist, self.device, self.cfg.sync_batchnorm)
        if self.cfg.compile:
            forward = torch.compile(forward)
        criterion = nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing)
        on_cpu = self.device.type == "cpu" and not self.dist.enabled
        ctx = StepContext(
            model=forward, optimizer=self.optimizer, schedule=self.schedule, criterion=criterion,
            device=self.device, amp=self.cfg.amp, scaler=self.scaler,
            channels_last=self.cfg.channels_last and self.device.type == "cuda", masks=self.masks,
            check_every=1 if on_cpu else self.cfg.log_every, log_every=self.cfg.log_every,
            any_rank=(lambda flag: ddp.any_rank(flag, self.dist, self.device)) if self.dist.enabled else None,
        )  # fmt: skip
        self.meter.start()
        try:
            while not self.done:
                self._epoch(ctx)
                if not self.done and self._stop_requested(None, ctx):
                    self._raise_interrupted()
        except NonFiniteLoss as exc:
            self._raise_nonfinite(exc)
        finally:
            self.meter.stop()
        return self._finish()

    def _budget_reached(self) -> bool:
        if self.epochs is not None and self.epoch >= self.epochs:
            return True
        return self.steps is not None and self.step >= self.steps

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, ctx: StepContext) -> None:
        if self._budget_reached():
            self.done = True
            return
        t = self.t
        start = self.sums.batches
        self.train_loader.set_epoch(self.epoch)
        total_epochs = self.epochs if self.epochs is not None else "?"
        bar = t.progress.epoch_bar(
            self.steps_per_epoch, f"stage {self.stage} {self.name} epoch {self.epoch + 1}/{total_epochs}", start
        )
        last_log = [self.step]

        def on_log(step: int, sums: EpochSums) -> None:
            if not t.progress.enabled:
                return
            loss = float(sums.loss) / max(sums.count, 1)
            acc = float(sums.correct) / max(sums.count, 1)
            if t.progress.tty:
                bar.update(step - last_log[0], loss=loss, acc=acc)
                last_log[0] = step
            else:  # a log file: a plain line every log_every steps instead of carriage-return bar updates
                run_time = self.totals_before["wall_time"] + self.meter.wall_time
                t.progress.line(
                    f"stage {self.stage} ({self.name}) epoch {self.epoch + 1}/{total_epochs} batch "
                    f"{sums.batches}/{self.steps_per_epoch}: train loss {loss:.4f} acc {acc:.4f} | run time {run_time:.1f} s"
                )

        ce = self.cfg.checkpoint_every

        def on_step(step: int, sums: EpochSums) -> None:
            # at the epoch's end the epoch checkpoint follows anyway
            mid = sums.batches < self.steps_per_epoch and not (self.steps is not None and step >= self.steps)
            saved = bool(ce and step % ce == 0 and mid)
            if saved:
                self.step = step
                self._save_last(mid_epoch=True)
            if mid and self._stop_requested(step, ctx):
                self.step = step
                if not saved:
                    self._save_last(mid_epoch=True)
                self._raise_interrupted()

        try:
            self.step = train_steps(
                ctx, self.train_loader.iter_from(start), self.sums, self.step, self.steps, on_log, on_step
            )
        finally:
            bar.close()
        self._end_epoch()

    def _reduced(self, values: list[torch.Tensor]) -> list[torch.Tensor]:
        for v in values:
            ddp.all_reduce_sum(v, self.dist)
        return values

    def _end_epoch(self) -> None:
        t, s = self.t, self.sums
        count_t = torch.tensor(s.count, dtype=torch.int64, device=self.device)
        loss_sum, correct, count_t = self._reduced([s.loss.clone(), s.correct.clone(), count_t])
        samples = int(count_t)
        self.meter.add(samples, s.batches)
        test = self._evaluate()
        if self.val_loader is not None:
            val = self._evaluate(self.val_loader, self.val_valid, "val")
            test = {**val, **test}
        self.epoch += 1
        m = self.meter.as_dict()
        row: dict[str, Any] = {
            **self.info,
            "event": "epoch",
            "stage": self.stage,
            "name": self.name,
            "epoch": self.epoch,
            "global_epoch": self.totals_before["epochs"] + self.epoch,
            "step": self.step,
            "train_loss": float(loss_sum) / max(samples, 1),
            "train_acc": float(correct) / max(samples, 1),
            **test,
            "lr": self.schedule(max(self.step - 1, 0)),
            "M": self.totals_before["M"] + m["M"],
            "stage_M": m["M"],
            "samples": m["samples"],
            "iterations": m["iterations"],
            "train_flops": m["train_flops"],
            "wall_time": self.totals_before["wall_time"] + m["wall_time"],
            "stage_wall_time": m["wall_time"],
            "peak_memory": m["peak_memory"],
            "params": self.params,
            "macs_per_sample": self.macs_per_sample,
        }
        if self.tokens > 1:
            lm.add_bits(row)
        self.history.append(row)
        self.sums = EpochSums.zeros(self.device)
        observe = getattr(self.schedule, "observe", None)
        if observe is not None:
            observe(self.history)
        if observe is not None and self.schedule.finished(self.step):
            self.done, self.stopped_by = True, "schedule"
        elif self.rule is not None and self.rule(self.history):
            self.done, self.stopped_by = True, "stopping"
        elif self._budget_reached():
            self.done = True
        t.metrics.write(row)
        t.progress.line(format_epoch(row))
        self._save_last(mid_epoch=False)

    def _evaluate(self, loader: Any = None, valid: int | None = None, prefix: str = "test") -> dict[str, Any]:
        if loader is None:
            loader, valid = self.test_loader, self.test_valid
        if loader is None:
            return {f"{prefix}_loss": None, f"{prefix}_acc": None}
        per_class = self.cfg.per_class and prefix == "test"
        sums = evaluate(
            self.model, loader, self.num_outputs, self.device, self.cfg.amp,
            self.cfg.channels_last and self.device.type == "cuda", per_class, valid,
        )  # fmt: skip
        keys = list(sums)
        reduced = dict(zip(keys, self._reduced([sums[k] for k in keys])))
        n = max(int(reduced["count"]), 1)
        out: dict[str, Any] = {f"{prefix}_loss": float(reduced["loss"]) / n, f"{prefix}_acc": float(reduced["correct"]) / n}
        if per_class:
            cc, cn = reduced["cls_correct"].tolist(), reduced["cls_count"].tolist()
            out["per_class_acc"] = [c / k if k else None for c, k in zip(cc, cn)]
        return out

    # ------------------------------------------------------------------ checkpoints
    def _progress_meta(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "epoch": self.epoch,
            "step": self.step,
            "done": self.done,
            "stopped_by": self.stopped_by,
            "history": self.history,
            "meter": self.meter.as_dict(),
            "schedule": self.schedule.describe(),
            "budget": {"epochs": self.epochs, "steps": self.steps},
            # the loader's order is a pure function of (seed, epoch): this is the whole data position
            "data": {"seed": self.seed, "epoch": self.epoch, "batch": self.sums.batches},
            "world_size": self.dist.world_size,
        }

    def _save_last(self, mid_epoch: bool) -> None:
        sums = self.sums
        if mid_epoch and self.dist.enabled:
            # rank 0 saves the sums of all ranks; the others continue from zero so the epoch total stays right
            count_t = torch.tensor(sums.count, dtype=torch.int64, device=self.device)
            loss_sum, correct, count_t = self._reduced([sums.loss.clone(), sums.correct.clone(), count_t])
            saved = EpochSums(loss_sum, correct, int(count_t), sums.batches)
            if not self.dist.is_main:
                z = EpochSums.zeros(self.device)
                sums.loss.copy_(z.loss)
                sums.correct.copy_(z.correct)
                sums.count = 0
            else:
                sums.loss.copy_(loss_sum)
                sums.correct.copy_(correct)
                sums.count = int(count_t)
            sums = saved
        if self.t.is_main:
            tensors, meta = ckpt.state_payload(
                self.model, self.optimizer, self.scaler, self._progress_meta(), sums.as_tensors()
            )
            self.last_ckpt = ckpt.save_last(self.t.checkpoint_dir, tensors, meta)
        ddp.barrier(self.dist)

    def _try_resume(self) -> bool:
        found = ckpt.load_last(self.t.checkpoint_dir)
        if found is None:
            return False
        tensors, meta, path = found
        if meta.get("stage") != self.stage:
            return False
        if meta.get("schedule") != self.schedule.describe():
            log.warning(
                "%s: the checkpoint's schedule %s differs from this run's %s (changed config or data?); "
                "the resumed run will not match an uninterrupted one", self.where, meta.get("schedule"),
                self.schedule.describe(),
            )  # fmt: skip
        acc = ckpt.restore_state(tensors, meta, self.model, self.optimizer, self.scaler, str(path))
        self.epoch = int(meta["epoch"])
        self.step = int(meta["step"])
        self.done = bool(meta.get("done", False))
        self.stopped_by = meta.get("stopped_by", "budget")
        self.history = list(meta.get("history", []))
        if hasattr(self.schedule, "replay"):
            self.schedule.replay(self.history)
        self.meter = meters.ComputeMeter(self.macs_per_sample, self.device, state=meta.get("meter"))
        self.sums = EpochSums.from_tensors(acc, self.device)
        if not self.dist.is_main:  # rank 0 holds the epoch's partial sums of all ranks
            batches = self.sums.batches
            self.sums = EpochSums.zeros(self.device)
            self.sums.batches = batches
        if self.masks:
            apply_masks(self.masks)
        if self.t.is_main:
            dropped = self.t.metrics.truncate_after(self.stage, self.step)
            if dropped:
                log.info("dropped %d metrics rows written after the checkpoint", dropped)
        self.t.progress.line(
            f"stage {self.stage} ({self.name}): resumed from {path.name} at epoch {self.epoch}, step {self.step}"
        )
        self.last_ckpt = path
        return True

    def _carry(self) -> None:
        if self.carry_from is None:
            return
        if not isinstance(self.carry_from, (tuple, list)) or len(self.carry_from) not in (2, 3):
            raise NetgrowTypeError(
                f"{self.where}: carry_from must be (old_model, old_optimizer_state) or "
                "(old_model, old_optimizer_state, param_map)"
            )
        old_model, old_state = self.carry_from[0], self.carry_from[1]
        pm: ParamMap | None = self.carry_from[2] if len(self.carry_from) == 3 else get_param_map(self.model)
        if old_model is self.model:
            pm = None  # continuing the same model: same names and shapes
        n = carry_optimizer_state(old_state, ddp.unwrap(old_model), self.optimizer, self.model, pm)
        log.info("%s: carried optimizer state for %d parameters", self.where, n)

    def _stop_requested(self, step: int | None, ctx: StepContext) -> bool:
        """Did SIGTERM/Ctrl-C ask to stop (see :mod:`netgrow.train.interrupt`)? Under DDP every rank must
        agree at the same step, so the flag is shared at the loss-check points only."""
        flag = stop_signal() is not None
        if not self.dist.enabled:
            return flag
        if step is not None and step % ctx.check_every:
            return False
        return ddp.any_rank(flag, self.dist, self.device)

    def _raise_interrupted(self) -> None:
        signum = stop_signal() or int(signal.SIGTERM)  # DDP: another rank got the signal
        raise RunInterrupted(
            f"{self.where}: stopped by {signal.Signals(signum).name} at epoch {self.epoch + 1}, step {self.step}; "
            f"the checkpoint {str(self.last_ckpt)!r} holds this point. Continue with --resume "
            "(Trainer(..., resume=True) and the same stages)",
            signum,
        )

    def _kept(self) -> str:
        """What survives a failed write, for the error message."""
        d = self.t.checkpoint_dir
        newest = next((d / n for n in (ckpt.LAST, ckpt.PREV) if (d / n).is_file()), None)
        finished = len(self.t.stage_summaries)
        kept = f"the checkpoint {str(newest)!r} is kept" if newest else "no checkpoint of this stage was written yet"
        return (
            f"{finished} finished stage(s) and {kept}; free space (or fix the permissions) and continue with "
            "--resume (Trainer(..., resume=True))"
        )

    def _raise_nonfinite(self, exc: NonFiniteLoss) -> None:
        epoch = self.epoch + 1
        steps = f"step {exc.last_step}" if exc.first_step == exc.last_step else f"steps {exc.first_step}..{exc.last_step}"
        kept = (
            f"the last good checkpoint {str(self.last_ckpt)!r} (epoch {self.epoch}) is kept"
            if self.last_ckpt is not None
            else "no checkpoint of this stage was written yet"
        )
        raise TrainingError(
            f"{self.where}: the training loss became {exc.value} at epoch {epoch}, {steps}; "
            f"the stage was stopped and {kept}. Lower the learning rate (lr={self.lr}), add warm-up "
            "(warmup_epochs) or check the data for NaN/inf inputs; from the command line, continue this run "
            f"with a lower rate: netgrow run CONFIG --out {str(self.t.run_dir)!r} --resume "
            f"--set train.lr={self.t.config.lr / 10:g}"
        ) from None

    # ------------------------------------------------------------------ stage end
    def _finish(self) -> StageResult:
        t = self.t
        m = self.meter.as_dict()
        test_acc = self.history[-1]["test_acc"] if self.history else None
        summary = {
            "stage": self.stage,
            "name": self.name,
            "info": self.info,
            "test_acc": test_acc,
            "val_acc": self.history[-1].get("val_acc") if self.history else None,
            "epochs": self.epoch,
            "steps": self.step,
            "stopped_by": self.stopped_by,
            "lr": self.lr,
            "meter": m,
            "M_before": self.totals_before["M"],
            "M_cumulative": self.totals_before["M"] + m["M"],
            "params": self.params,
            "macs_per_sample": self.macs_per_sample,
            "history": self.history,
        }
        model_path, state_path, summary_path = ckpt.stage_paths(t.stages_dir, self.stage)
        if t.is_main:
            save_model(self.model, model_path)
            tensors, meta = ckpt.state_payload(None, self.optimizer, self.scaler, {"stage": self.stage})
            safe_io.write_atomic(state_path, tensors, meta)
            t.metrics.write({
                **self.info, "event": "stage_end", "stage": self.stage, "name": self.name, "epoch": self.epoch,
                "step": self.step, "test_acc": test_acc, "M": summary["M_cumulative"], "stage_M": m["M"],
                "wall_time": self.totals_before["wall_time"] + m["wall_time"], "params": self.params,
                "macs_per_sample": self.macs_per_sample, "stopped_by": self.stopped_by, "meter": m,
            })  # fmt: skip
            write_json_atomic(summary_path, summary)  # last: its presence marks the stage finished
        ddp.barrier(self.dist)
        t._add_totals(m, self.epoch)
        t.stage_summaries.append(summary)
        t.progress.line(
            f"stage {self.stage} ({self.name}) done: test acc {test_acc if test_acc is None else round(test_acc, 4)}, "
            f"M {m['M']:.3e} MACs (cumulative {summary['M_cumulative']:.3e}) | run time "
            f"{self.totals_before['wall_time'] + m['wall_time']:.1f} s (stage {m['wall_time']:.1f} s)"
        )
        return StageResult(
            model=self.model,
            optimizer_state=self.optimizer.state_dict(),
            history=self.history,
            meter=m,
            test_acc=test_acc,
            params=self.params,
            stage=self.stage,
            name=self.name,
            macs_per_sample=self.macs_per_sample,
            stopped_by=self.stopped_by,
            summary=summary,
        )
