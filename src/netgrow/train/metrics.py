"""Run-directory text outputs: ``metrics.jsonl`` rows, JSON summaries and the resolved config.

``metrics.jsonl`` holds one JSON object per line: ``"event": "epoch"`` rows after every evaluation and
``"event": "stage_end"`` rows. Rows are appended and flushed at once so a killed run keeps every row it
wrote; on resume, rows written after the checkpoint the run continues from are dropped
(:meth:`MetricsWriter.truncate_after`) so no epoch appears twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from netgrow.train.safe_io import storage_error, write_bytes_atomic

log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None (strict JSON), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON atomically (temporary file, fsync, rename)."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


class MetricsWriter:
    """Appends rows to ``path`` (JSON Lines). ``enabled=False`` (DDP ranks other than 0) writes nothing.

    ``also``: called with every row written (the TensorBoard log).
    """

    def __init__(
        self, path: str | os.PathLike[str], enabled: bool = True, also: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.also = also

    def write(self, row: dict[str, Any]) -> None:
        """Append one row and flush it to the OS."""
        if not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(json_safe(row)) + "\n")
                f.flush()
        except OSError as exc:
            raise storage_error(self.path, exc) from None
        if self.also is not None:
            self.also(row)

    def rows(self) -> list[dict[str, Any]]:
        """All rows written so far (a torn last line from a crash is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping a torn line (the run was killed while writing it)", self.path)
        return out

    def truncate_after(self, stage: int, step: int | None) -> int:
        """Drop rows of stages after ``stage`` and rows of ``stage`` past optimizer step ``step``.

        ``step=None`` drops every row of ``stage`` (the stage restarts from its beginning). Returns the
        number of rows dropped.
        """
        if not self.enabled or not self.path.is_file():
            return 0
        rows = self.rows()

        def keep(row: dict[str, Any]) -> bool:
            s = row.get("stage", -1)
            if s < stage:
                return True
            if s > stage or step is None or row.get("event") != "epoch":
                return False
            return row.get("step", 0) <= step

        kept = [r for r in rows if keep(r)]
        if len(kept) != len(rows):
            write_bytes_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        return len(rows) - len(kept)


def write_train_config(run_dir: str | os.PathLike[str], resolved: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/train_config.json``; warn when a resumed run's config differs from the stored one."""
    path = Path(run_dir) / "train_config.json"
    if path.is_file():
        try:
            old = read_json(path)
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):
            changed = sorted(k for k in set(old) | set(resolved) if old.get(k) != json_safe(resolved.get(k)))
            if changed:
                log.warning(
                    "train_config.json: the resumed run changes %s; the result will not match an uninterrupted run",
                    changed,
                )
    return write_json_atomic(path, resolved)
