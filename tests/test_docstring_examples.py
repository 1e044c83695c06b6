"""The examples in module docstrings run as written (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["netgrow.strategies.schema", "netgrow.strategies.registry", "netgrow.cli.config",
           "netgrow.train.grow_loop", "netgrow.train.config"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0
