"""Shared pieces of the command-line tests: a tiny experiment config and a runner of ``netgrow``."""

from __future__ import annotations

from pathlib import Path

from netgrow.cli.main import main

TINY = """
strategy = "scratch"
name = "tiny"
seed = 0
[data]
name = "digits"
limit_train = 200
limit_test = 100
[model]
arch = "vgg11"
width = 0.0625
[train]
epochs = 1
batch_size = 50
deterministic = true
"""


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def run_cli(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err
