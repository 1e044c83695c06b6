"""The netgrow error hierarchy.

Every error netgrow raises on bad input is a ``NetgrowError`` and also a ``ValueError`` or
``TypeError`` as fits, so callers can catch either. Messages name the module, the value and
what to do instead.
"""

from __future__ import annotations


class NetgrowError(Exception):
    """Base class of every error netgrow raises on purpose."""


class NetgrowValueError(NetgrowError, ValueError):
    """A value is out of range or inconsistent (a width, a ratio, a module name, a config key)."""


class NetgrowTypeError(NetgrowError, TypeError):
    """An object is of a kind netgrow cannot work with (a model fx cannot trace, a module type)."""


class TraceError(NetgrowTypeError):
    """``torch.fx`` could not trace the model, or shape propagation failed."""


class LockedGroupError(NetgrowValueError):
    """A channel group cannot be resized; the message says why."""


class VerificationError(NetgrowValueError):
    """A function-preserving op changed the function beyond tolerance.

    ``module`` names the first module whose output diverged, ``max_error`` the error at the output.
    """

    def __init__(self, message: str, module: str | None = None, max_error: float | None = None):
        super().__init__(message)
        self.module = module
        self.max_error = max_error


class CheckpointError(NetgrowValueError):
    """A checkpoint is missing, truncated, corrupted or unsafe to load."""


class ConfigError(NetgrowValueError):
    """An experiment config is invalid; the message names the key, the value and the allowed values."""


class DataError(NetgrowValueError):
    """A data set is missing, corrupt or inconsistent; the message says how to fix it."""


class TrainingError(NetgrowError, RuntimeError):
    """Training could not go on (NaN/inf loss); the last good checkpoint is kept."""


class StorageError(NetgrowError, OSError):
    """Writing an output file failed (no space left, no permission, a read-only file system).

    ``path`` is the file that could not be written; files written before are intact (writes are atomic).
    """

    def __init__(self, message: str, path: str | None = None, errno_: int | None = None):
        super().__init__(message)
        self.path = path
        self.os_errno = errno_


class RunInterrupted(NetgrowError):
    """A run stopped on SIGTERM or Ctrl-C after writing a checkpoint; ``signum`` is the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
