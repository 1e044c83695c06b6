"""The runnable examples in module docstrings run as written (doctest), one list for every module that has them."""

from __future__ import annotations

import doctest
import importlib

import pytest

# (module, how many examples it must at least run, doctest option flags)
MODULES = [
    ("netgrow.strategies.schema", 2, doctest.ELLIPSIS), ("netgrow.strategies.registry", 2, doctest.ELLIPSIS),
    ("netgrow.cli.config", 2, doctest.ELLIPSIS), ("netgrow.train.grow_loop", 2, doctest.ELLIPSIS),
    ("netgrow.train.config", 2, doctest.ELLIPSIS),
    ("netgrow.data.split", 1, 0), ("netgrow.train.schedules", 1, 0), ("netgrow.analysis.frontier", 1, 0),
    ("netgrow.ops.kernel_prune", 1, 0), ("netgrow.models.init", 1, 0), ("netgrow.cli.frontier", 1, 0),
    ("netgrow.train.stopping", 1, 0), ("netgrow.strategies.rules", 1, 0), ("netgrow.strategies.angle", 1, 0),
    ("netgrow.models.gpt", 1, 0), ("netgrow.models.gpt_grow", 1, 0), ("netgrow.data.text", 1, 0),
    ("netgrow.train.lm", 1, 0),
]


@pytest.mark.parametrize("name,least,flags", MODULES, ids=[m[0] for m in MODULES])
def test_module_examples_run(name, least, flags):
    result = doctest.testmod(importlib.import_module(name), optionflags=flags)
    assert result.attempted >= least and result.failed == 0
