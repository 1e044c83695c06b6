"""Earlier outputs of ``compare`` and ``report`` are not overwritten by accident."""

from __future__ import annotations

from pathlib import Path

from netgrow.errors import ConfigError


def refuse_overwrite(paths: list[Path], force: bool, command: str) -> None:
    """``ConfigError`` (exit 2, nothing written) if any of ``paths`` exists, unless ``force``."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{command}: {', '.join(existing)} already exist(s) from an earlier {command}; allowed: --force to "
            "overwrite them, or --out another directory"
        )
