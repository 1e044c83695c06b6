"""The layer rule of docs/architecture.md holds: imports only point down (import-linter's contract in
pyproject.toml, also run by `make test` / CI as `lint-imports`), and every package is in a layer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "netgrow"


def _contract() -> dict:
    (contract,) = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return contract


def test_every_package_and_module_is_in_a_layer():
    layered = {name.strip() for layer in _contract()["layers"] for name in re.split(r"[|:]", layer)}
    top = {f"netgrow.{p.name}" for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    top |= {f"netgrow.{p.stem}" for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert top == layered, f"not in a layer: {sorted(top - layered)}; unknown: {sorted(layered - top)}"


def test_layers_order_matches_the_architecture():
    order = [layer.split("|")[0].split(":")[0].strip().removeprefix("netgrow.") for layer in _contract()["layers"]]
    assert order == ["cli", "analysis", "strategies", "train", "models", "ops", "graph", "spec"]


def test_imports_only_point_down():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                           "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    found = set(re.findall(r"^- (netgrow[\w.]*) -> (netgrow[\w.]*) \(l\.\d+", proc.stdout, re.M))
    assert "Analyzed" in proc.stdout, proc.stdout + proc.stderr
    assert not found, f"upward imports: {sorted(found)}\n{proc.stdout}"
    assert proc.returncode == 0, proc.stdout
