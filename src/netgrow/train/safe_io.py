"""Checkpoint files that never execute code on load: safetensors tensors + a JSON header.

One file holds a dict of tensors and a JSON-serialisable ``meta`` dict (stored in the safetensors
metadata under ``"netgrow"``). Writes are atomic: temporary file in the same directory, flush, fsync,
rename, fsync of the directory, so a crash never leaves a half-written file under the final name.
A pickle (or any non-safetensors payload) is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from netgrow.errors import CheckpointError

_META_KEY = "netgrow"
FORMAT_VERSION = 1


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, flush, fsync, rename,
    fsync of the directory. Readers see the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_atomic(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``meta`` to ``path`` atomically; returns the path."""
    # safetensors wants contiguous CPU tensors that do not share storage
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = json.dumps({"format_version": FORMAT_VERSION, **meta})
    return write_bytes_atomic(path, st_save_bytes(flat, metadata={_META_KEY: header}))


def read(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by ``write_atomic``; ``CheckpointError`` if missing, truncated, corrupt or unsafe."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path or the run directory")
    data = path.read_bytes()
    if data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or data[:2] == b"PK":
        raise CheckpointError(
            f"{str(path)!r} is a pickle/zip (torch.save) file; netgrow never unpickles checkpoints because "
            "loading a pickle can run arbitrary code. Re-save the model with netgrow.save()."
        )
    try:
        tensors = st_load_bytes(data)
        header = _read_header(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupted ({len(data)} bytes: {exc}); "
            "use an earlier checkpoint"
        ) from None
    if _META_KEY not in header:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a netgrow checkpoint (no '{_META_KEY}' metadata)")
    try:
        meta = json.loads(header[_META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted header: {exc}") from None
    return tensors, meta


def _read_header(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}
