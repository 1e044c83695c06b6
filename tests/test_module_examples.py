"""The runnable examples in the docstrings of the validation / schedule / frontier / kernel-pruning modules."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["netgrow.data.split", "netgrow.train.schedules", "netgrow.analysis.frontier", "netgrow.ops.kernel_prune", "netgrow.models.init",
           "netgrow.cli.frontier", "netgrow.train.stopping", "netgrow.strategies.rules", "netgrow.strategies.angle"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted >= 1 and result.failed == 0
