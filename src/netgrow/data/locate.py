"""Where data sets live on disk: ``root=`` argument, then environment variables, then defaults.

Nothing here downloads anything; a missing data set is a :class:`netgrow.errors.DataError` that says
which file was looked for where, and how to point netgrow at it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["DATA_ROOT_ENV", "candidate_dirs", "find_first", "describe"]

#: Environment variable naming a directory that holds data sets in their standard sub-directories.
DATA_ROOT_ENV = "NETGROW_DATA_ROOT"


def candidate_dirs(
    root: str | os.PathLike | None,
    env_vars: Sequence[str] = (),
    subdirs: Sequence[str] = (),
    defaults: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Directories to search, most specific first.

    With ``root`` given, only ``root`` and ``root/<subdir>`` are searched (an explicit argument is
    never silently overridden). Otherwise: each set ``env_vars`` directory (and its ``subdirs``),
    then ``$NETGROW_DATA_ROOT/<subdir>``, then ``defaults``.
    """
    out: list[Path] = []

    def add(base: Path) -> None:
        out.append(base)
        out.extend(base / s for s in subdirs)

    if root is not None:
        add(Path(root).expanduser())
        return out
    for var in env_vars:
        value = os.environ.get(var)
        if value:
            add(Path(value).expanduser())
    shared = os.environ.get(DATA_ROOT_ENV)
    if shared:
        add(Path(shared).expanduser())
    out.extend(Path(d) for d in defaults)
    return out


def find_first(dirs: Iterable[Path], names: Sequence[str]) -> Path | None:
    """The first ``dir/name`` that is a file, trying every name in each directory in order."""
    for d in dirs:
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def describe(dirs: Sequence[Path]) -> str:
    """Human-readable list of searched directories for error messages."""
    return ", ".join(str(d) for d in dirs) if dirs else "(no directory: pass root=...)"
