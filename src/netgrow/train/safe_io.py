"""Checkpoint files that never execute code on load: safetensors tensors + a JSON header.

One file holds a dict of tensors and a JSON-serialisable ``meta`` dict (stored in the safetensors
metadata under ``"netgrow"``). Writes are atomic: temporary file in the same directory, flush, fsync,
rename, fsync of the directory, so a crash never leaves a half-written file under the final name.
A pickle (or any non-safetensors payload) is refused, never unpickled.

Checksums: every file carries a SHA-256 digest of each tensor (its dtype, shape and stored bytes) and of
the JSON header, in the safetensors metadata under ``"netgrow.digests"``. ``read`` verifies them all
and raises ``CheckpointError`` naming the first tensor whose bytes changed (a flipped bit on disk, a
file edited by hand), so the Trainer falls back to the previous checkpoint exactly as for a truncated
file. SHA-256 (the standard library's, OpenSSL) was the fastest of hashlib's hashes here: ~1.2 GB/s on an
idle core, ~0.4 GB/s on a loaded one, i.e. ~0.1 s per write and per read of a 40 MB checkpoint
(``benchmarks/bench_checksums.py``). Files written before checksums existed (format
version 1) have no digests: they are read unverified, with one warning naming the file; re-save them
(``netgrow.save(netgrow.load(path), path)``) to add digests. A version-2 file without digests is
refused as corrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from netgrow.errors import CheckpointError, StorageError

log = logging.getLogger(__name__)

_META_KEY = "netgrow"
_DIGEST_KEY = "netgrow.digests"
_HEADER_DIGEST = "__header__"  # the digest of the JSON header, beside the tensors' digests
FORMAT_VERSION = 2  # 2: per-tensor SHA-256 digests; 1: none


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, flush, fsync, rename,
    fsync of the directory. Readers see the old file or the new one, never a half-written one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise storage_error(path, exc) from None
    try:
        # mkstemp creates 0600; give the file the mode any other output of the run gets (0666 minus umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(path, exc) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def storage_error(path: Path, exc: OSError) -> StorageError:
    """A ``StorageError`` naming ``path`` (the OS error of a failed write often names no file)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(
        f"cannot write {str(path)!r}: {reason}; the file's previous version, if any, is unchanged",
        path=str(path),
        errno_=exc.errno,
    )


def write_atomic(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``meta`` to ``path`` atomically; returns the path."""
    # safetensors wants contiguous CPU tensors that do not share storage
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = json.dumps({"format_version": FORMAT_VERSION, **meta})
    data = st_save_bytes(flat, metadata={_META_KEY: header})
    # digests of the bytes exactly as stored; the metadata holding them is added by a second save
    # (safetensors lays tensors out by dtype and name, independent of the metadata)
    digests = _digests(data)
    digests[_HEADER_DIGEST] = hashlib.sha256(header.encode()).hexdigest()
    data = st_save_bytes(flat, metadata={_META_KEY: header, _DIGEST_KEY: json.dumps(digests)})
    return write_bytes_atomic(path, data)


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
    _verify(path, data, header, meta)
    return tensors, meta


def _tensor_spans(data: bytes) -> dict[str, tuple[str, list[int], int, int]]:
    """``{name: (dtype, shape, start, end)}`` with absolute byte offsets into ``data``."""
    n = int.from_bytes(data[:8], "little")
    entries = json.loads(data[8 : 8 + n])
    return {
        name: (e["dtype"], list(e["shape"]), 8 + n + e["data_offsets"][0], 8 + n + e["data_offsets"][1])
        for name, e in entries.items()
        if name != "__metadata__"
    }


def _digests(data: bytes) -> dict[str, str]:
    view = memoryview(data)
    out = {}
    for name, (dtype, shape, start, end) in _tensor_spans(data).items():
        h = hashlib.sha256(f"{dtype}{shape}".encode())
        h.update(view[start:end])
        out[name] = h.hexdigest()
    return out


def _verify(path: Path, data: bytes, header: dict[str, str], meta: dict[str, Any]) -> None:
    """Compare every stored digest with the bytes read; ``CheckpointError`` naming the first mismatch."""
    if _DIGEST_KEY not in header:
        if meta.get("format_version", 1) < 2:
            log.warning("%s was written without checksums (an older netgrow); its tensors are not verified", path)
            return
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: its checksums are missing; use an earlier checkpoint")
    try:
        stored = json.loads(header[_DIGEST_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: its checksums are unreadable") from None
    if stored.get(_HEADER_DIGEST) != hashlib.sha256(header[_META_KEY].encode()).hexdigest():
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted: its JSON header does not match its checksum")
    actual = _digests(data)
    for name in sorted(set(actual) | (set(stored) - {_HEADER_DIGEST})):
        if actual.get(name) != stored.get(name):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupted: tensor {name!r} does not match its checksum (the file "
                "changed after it was written: a disk error or an edit); use an earlier checkpoint"
            )


def _read_header(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}
