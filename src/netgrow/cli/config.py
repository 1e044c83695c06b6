"""Loading an experiment file: TOML -> the typed ``ExperimentConfig``, with ``--set`` overrides.

This module only reads the file, applies ``--set key=value`` overrides and reports errors; the schema
(``ExperimentConfig``, each strategy's section, ``[train]`` from ``TrainConfig``'s fields) lives in
``netgrow.strategies.experiment`` and the strategy modules. Every error is a ``ConfigError`` naming the
key, the bad value and what is allowed.

Example::

    >>> from netgrow.cli.config import apply_overrides
    >>> apply_overrides({"train": {"lr": 0.1}}, ["train.lr=0.01", "seed=3"])
    {'train': {'lr': 0.01}, 'seed': 3}
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netgrow.errors import ConfigError
from netgrow.strategies.experiment import (  # noqa: F401 - re-exported: the config API used to live here
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    StoppingConfig,
    check_growth,
    family_depth,
    known_models,
    parse_config,
)
from netgrow.strategies.resources import (  # noqa: F401 - re-exported
    resolve_schedule,
    resolve_with_data,
    validate_resources,
)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML dict of an experiment file (``ConfigError`` for a missing file, a directory, bad TOML)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a directory; pass the path of an experiment .toml file "
                          "(examples: configs/*.toml)")
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of an experiment .toml "
                          "(examples: configs/*.toml)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({exc.strerror or exc}); "
                          "check its permissions") from None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> ``(["train", "lr"], 0.01)``; the value is read as TOML (``true``, ``3``,
    ``[5, 10]``, ``"text"``), a bare word as a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(p.strip() for p in parts):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set train.lr=0.01 "
                          "or --set seed=3")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if not text:
            raise ConfigError(f"--set {item!r}: no value after '='; e.g. --set {key}=0.01") from None
        value = text  # a bare word: cuda, fashion_mnist, ...
    return [p.strip() for p in parts], value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with every ``--set key=value`` applied (tables created as needed)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        table = out
        for i, p in enumerate(parts[:-1]):
            nxt = table.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is a value, not a table; "
                                  f"allowed: a key inside a table, e.g. train.lr")
            table = nxt
        table[parts[-1]] = value
    return out


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The dotted keys named by ``--set`` overrides, in order."""
    return [".".join(parse_override(item)[0]) for item in overrides]


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read and validate a TOML experiment file with ``overrides`` applied. Raises ``ConfigError``
    (never writes anything); an error caused by an override says so."""
    raw = read_toml(path)
    merged = apply_overrides(raw, overrides)
    try:
        return parse_config(merged, source=str(path))
    except ConfigError as exc:
        text = str(exc)
        named = [item for item, key in zip(overrides, override_keys(overrides)) if f"{key} " in text or f"{key}:" in text]
        if named:
            raise ConfigError(f"{text} (set by --set {named[0]})") from None
        raise
