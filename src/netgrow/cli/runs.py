"""Reading finished (or running) run directories: summary.json, config.json and metrics.jsonl.

Shared by ``netgrow compare`` and ``netgrow report`` (and the benchmarks), so both see the same numbers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netgrow.errors import NetgrowValueError

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One run directory: its summary, resolved config and epoch rows (with run-global epoch and M)."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.config.get("name") or self.path.name)

    @property
    def strategy(self) -> str:
        return str(self.summary.get("strategy") or self.config.get("strategy") or "?")

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.summary.get("stages", []))

    @property
    def M_total(self) -> int:  # noqa: N802 - the paper's symbol
        return int(self.summary.get("M_total", sum(s.get("M", 0) for s in self.stages)))


def load_run(path: str | Path) -> Run:
    """Read a run directory; a clear error when it is not one."""
    path = Path(path)
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        hint = " (the run has not finished; resume it with `netgrow run CONFIG --resume --out DIR`)" if (
            path / "metrics.jsonl").is_file() else ""
        raise NetgrowValueError(f"{str(path)!r} is not a finished netgrow run: no summary.json{hint}")
    try:
        summary = json.loads(summary_path.read_text())
        config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    except json.JSONDecodeError as exc:
        raise NetgrowValueError(f"{str(path)!r}: corrupted JSON ({exc})") from None
    return Run(path, summary, config, epoch_rows(path / "metrics.jsonl"))


def epoch_rows(path: Path) -> list[dict[str, Any]]:
    """The ``"event": "epoch"`` rows of a metrics file, each with ``global_epoch`` (1, 2, ... across stages)
    and ``run_M`` (forward MACs of training so far in the whole run, from the per-stage ``stage_M``)."""
    if not path.is_file():
        return []
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
        if row.get("event") == "epoch":
            rows[(int(row.get("stage", 0)), int(row.get("epoch", 0)))] = row  # a re-logged epoch: keep the last
    ordered = [rows[k] for k in sorted(rows)]
    stage_M_done: dict[int, float] = {}
    stage_wall_done: dict[int, float] = {}
    out = []
    for i, row in enumerate(ordered, start=1):
        s = int(row.get("stage", 0))
        stage_M = float(row.get("stage_M", row.get("M", 0)) or 0)
        stage_wall = float(row.get("stage_wall_time", row.get("wall_time", 0)) or 0)
        before = sum(v for k, v in stage_M_done.items() if k < s)
        wall_before = sum(v for k, v in stage_wall_done.items() if k < s)
        stage_M_done[s] = stage_M
        stage_wall_done[s] = stage_wall
        r = dict(row)
        r["global_epoch"] = i
        r["run_M"] = before + stage_M if "stage_M" in row else float(row.get("M", 0) or 0)
        r["run_wall_time"] = wall_before + stage_wall if "stage_wall_time" in row else float(row.get("wall_time", 0) or 0)
        out.append(r)
    return out


def compute_to_target(run: Run, target_acc: float, classes: int | None = None) -> dict[str, Any] | None:
    """The first epoch at which ``run`` reaches ``target_acc`` (fraction): its run-global epoch, M and wall
    time; ``None`` when it never does.

    ``classes``: only epochs evaluated on that many classes count (an early cumulative stage is scored on
    a subset of the classes, so its accuracy is not comparable with the full task's).
    """
    for r in run.epochs:
        acc = r.get("test_acc")
        if classes is not None and r.get("classes") is not None and int(r["classes"]) != classes:
            continue
        if acc is not None and float(acc) >= target_acc:
            return {"epoch": r["global_epoch"], "M": r["run_M"], "wall_time": r["run_wall_time"],
                    "stage": r.get("stage"), "test_acc": float(acc)}
    return None


def pick_baseline(runs: list[Run], baseline: Run | None = None) -> Run | None:
    """The explicit baseline, else the first scratch run among ``runs``, else None."""
    if baseline is not None:
        return baseline
    return next((r for r in runs if r.strategy == "scratch"), None)
