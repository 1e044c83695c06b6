"""Optional TensorBoard logging (``TrainConfig(tensorboard=True)``, ``netgrow run --tensorboard``).

Every row written to ``metrics.jsonl`` also becomes TensorBoard scalars in ``RUN_DIR/tensorboard``: one
scalar per numeric field under its own name (``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
``lr``, ``M``, ``params``, ``macs_per_sample``, ``wall_time``, ...), with the run-global epoch as the step
(epoch rows), and ``stage_end/<field>`` for the end-of-stage rows. Each stage's start is a growth event:
the text ``growth`` names the stage, its parameter count before and after, and the growth ops that built
it, and the scalar ``growth/params`` marks it on the epoch axis. Only rank 0 writes.

A resumed run appends to the same event files; the rows written again after the checkpoint carry the
same steps, and TensorBoard shows the latest value of each.

Needs the ``tensorboard`` package (``pip install 'netgrow[tensorboard]'``); without it, asking for
TensorBoard logging is a ``ConfigError`` when the Trainer starts, before anything is trained.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from netgrow.errors import ConfigError

SKIP = {"stage", "epoch", "global_epoch", "step"}  # bookkeeping, not metrics


class TensorBoardLog:
    """Writes metrics rows and growth events to TensorBoard event files under ``log_dir``."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError(
                f"train.tensorboard = true needs the tensorboard package ({exc}); install it with "
                "`pip install 'netgrow[tensorboard]'` or set tensorboard = false"
            ) from None
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._last_step = 0

    def row(self, row: dict[str, Any]) -> None:
        """Log one metrics row (as written to ``metrics.jsonl``)."""
        event = row.get("event", "epoch")
        if event == "epoch":
            step = int(row.get("global_epoch", self._last_step + 1))
            self._last_step = step
            prefix = ""
        else:
            step, prefix = self._last_step, f"{event}/"
        for key, value in row.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            self._writer.add_scalar(prefix + key, float(value), step)
        self._writer.flush()

    def growth(self, stage: int, name: str, params_before: int | None, params: int, ops: list[dict[str, Any]]) -> None:
        """Log the start of stage ``stage``: what grew, and the parameters before and after."""
        step = self._last_step
        what = ", ".join(str(op.get("op")) for op in ops) or "no growth op (same model, or a new one)"
        before = "-" if params_before is None else f"{params_before:,}"
        self._writer.add_text("growth", f"stage {stage} ({name}): {what}; parameters {before} -> {params:,}", step)
        self._writer.add_scalar("growth/params", float(params), step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
