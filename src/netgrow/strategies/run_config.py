"""RUN_DIR/config.json and RUN_DIR/history.jsonl: the resolved config of a run and every start of it.

A new run writes the resolved config; ``--resume`` must bring the same config, except for the keys named
with ``--set`` (deliberate changes, e.g. a lower learning rate after a NaN loss). Each start appends one
line to the history: ``{"event": "start" | "resume", "time", "overrides", "changes": {key: {"from", "to"}}}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netgrow.errors import ConfigError
from netgrow.strategies.base import is_main_process

if TYPE_CHECKING:
    from netgrow.strategies.experiment import ExperimentConfig

log = logging.getLogger(__name__)

CONFIG = "config.json"
HISTORY = "history.jsonl"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_changes(stored: dict[str, Any], resolved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (stored value, new value)}`` for every key whose value differs (``out`` ignored)."""
    a, b = _flatten(stored), _flatten(resolved)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k != "out" and a.get(k) != b.get(k)}


def write_config(cfg: ExperimentConfig, run_dir: Path, resume: bool, changes: Sequence[str] = ()) -> None:
    """Write RUN_DIR/config.json and append the start to RUN_DIR/history.jsonl.

    On resume the stored config must equal this one except for the keys named in ``changes`` (the
    ``--set`` overrides); those changes are recorded in the history and config.json is updated. Any other
    difference raises ``ConfigError`` listing the keys with both values.
    """
    from netgrow.train.metrics import write_json_atomic

    if not is_main_process():
        return
    path = run_dir / CONFIG
    resolved = cfg.to_dict()
    allowed = set(changes)
    if "seed" in allowed and resolved["train"].get("seed") == resolved["seed"]:
        allowed.add("train.seed")  # [train] seed follows the top-level seed unless given
    event: dict[str, Any] = {"event": "start", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "overrides": sorted(set(changes))}
    if resume and path.is_file():
        stored = json.loads(path.read_text())
        defaults = cfg.defaults()
        diff = {k: v for k, v in config_changes(stored, resolved).items()
                if not (k not in _flatten(stored) and k in defaults and v[1] == defaults[k])}
        refused = {k: v for k, v in diff.items() if not any(k == a or k.startswith(a + ".") for a in allowed)}
        if refused:
            listed = "; ".join(f"{k}: run {old!r}, now {new!r}" for k, (old, new) in refused.items())
            keep = " ".join(f"--set {k}={_toml(old)}" for k, (old, _) in refused.items())
            raise ConfigError(
                f"{cfg.source}: --resume of {str(run_dir)!r} with a different config ({listed}); allowed: the "
                f"config the run was started with (to keep the run's values: {keep}), deliberate changes "
                "named with --set KEY=VALUE, or a new --out directory"
            )
        event = {"event": "resume", "time": event["time"], "overrides": sorted(set(changes)),
                 "changes": {k: {"from": old, "to": new} for k, (old, new) in diff.items()}}
        if diff:
            log.info("resuming %s with changes: %s", run_dir,
                     ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in diff.items()))
    write_json_atomic(path, resolved)
    with open(run_dir / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event) + "\n")


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()
