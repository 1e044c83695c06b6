"""Stop a run cleanly on SIGTERM or Ctrl-C: finish the current step, write a checkpoint, exit.

SLURM, Kubernetes and ``timeout`` send SIGTERM some seconds before they kill a job. Inside
:func:`graceful_stop` the first SIGTERM or SIGINT (Ctrl-C) only sets a flag; the Trainer reads it after
every optimizer step (the safe point: weights, optimizer, RNG and data position agree), writes
``checkpoints/last.safetensors`` and raises :class:`netgrow.errors.RunInterrupted`. The ``netgrow`` command
then prints one line and exits with 128 + the signal number (143 for SIGTERM, 130 for Ctrl-C);
``--resume`` continues bitwise. A second signal acts at once (Ctrl-C raises ``KeyboardInterrupt``,
SIGTERM terminates), for when a step takes too long.

Example (a training script of your own)::

    from netgrow.train import graceful_stop
    with graceful_stop():
        trainer.run_stage(0, "small", model, train_set, test_set)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: list[int] = []  # the signal that asked to stop (at most one), while graceful_stop is active


def requested() -> int | None:
    """The signal number that asked the run to stop, or None."""
    return _requested[0] if _requested else None


def _handler(signum: int, frame: FrameType | None) -> None:
    if _requested:  # the second signal: stop now
        signal.signal(signum, signal.SIG_DFL)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)
        return
    _requested.append(signum)
    log.warning(
        "received %s: stopping after the current training step, once a checkpoint is written "
        "(send it again to stop at once, without a checkpoint)", signal.Signals(signum).name,
    )  # fmt: skip


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """Within this block SIGTERM and SIGINT stop training at the next safe point (see the module doc).

    Outside the main thread (where Python cannot install signal handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    _requested.clear()
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested.clear()
