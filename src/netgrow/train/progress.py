"""Progress display: a tqdm bar per epoch on a terminal, plain lines otherwise, nothing when quiet.

The bar shows the running training loss and accuracy (updated every ``log_every`` steps, the only
points where the trainer reads values back from the device). Without a terminal (CI, log files) a
plain line is printed every ``log_every`` steps and one per epoch instead, so logs stay readable. Epoch
lines and a stage's ``done:`` line show the same clock: the run's training time so far (``run time``).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


class _Bar:
    """One epoch's display; ``update`` advances it, ``close`` ends it."""

    def __init__(self, total: int, desc: str, initial: int, stream: TextIO, use_tqdm: bool) -> None:
        self._tqdm = (
            tqdm(total=total, initial=initial, desc=desc, file=stream, leave=False, dynamic_ncols=True, unit="it")
            if use_tqdm
            else None
        )

    def update(self, n: int, **postfix: float) -> None:
        if self._tqdm is not None:
            self._tqdm.update(n)
            if postfix:
                self._tqdm.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


class Progress:
    """Progress reporter of one process. ``enabled=False`` (quiet, or a DDP rank other than 0) is silent.

    ``tty=None`` detects a terminal on ``stream`` (default ``sys.stderr``).
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if tty is None and callable(isatty) else bool(tty)

    def epoch_bar(self, total: int, desc: str, initial: int = 0) -> _Bar:
        """A bar for one epoch of ``total`` steps (starting at ``initial`` when resuming mid-epoch)."""
        return _Bar(total, desc, initial, self.stream, self.enabled and self.tty)

    def line(self, text: str) -> None:
        """Print one line (above the bar on a terminal)."""
        if not self.enabled:
            return
        if self.tty:
            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


def format_epoch(row: dict[str, Any]) -> str:
    """The one-line summary of an epoch row."""

    def f(key: str, fmt: str) -> str:
        v = row.get(key)
        return "-" if v is None else format(v, fmt)

    return (
        f"stage {row['stage']} ({row['name']}) epoch {row['epoch']} step {row['step']}: "
        f"train loss {f('train_loss', '.4f')} acc {f('train_acc', '.4f')} | "
        f"test loss {f('test_loss', '.4f')} acc {f('test_acc', '.4f')} | lr {f('lr', '.3g')} | "
        f"M {f('M', '.3e')} MACs | run time {f('wall_time', '.1f')} s"
    )
