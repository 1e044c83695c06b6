"""Every table in BENCHMARKS.md is generated from benchmarks/results/*.json (benchmarks/tables.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tables():
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "benchmarks" / "tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmarks_tables_match_their_json():
    mod = _tables()
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert mod.render(text) == text, "a BENCHMARKS.md table differs from its JSON: run python benchmarks/tables.py"


def test_every_table_in_benchmarks_md_is_generated():
    text = (ROOT / "BENCHMARKS.md").read_text()
    inside = False
    for line in text.splitlines():
        if re.match(r"<!-- table:\w+ -->", line):
            inside = True
        elif re.match(r"<!-- /table:\w+ -->", line):
            inside = False
        elif line.startswith("|"):
            assert inside, f"a table row outside a generated block: {line!r}"


def test_a_hand_edit_is_caught(tmp_path):
    mod = _tables()
    text = (ROOT / "BENCHMARKS.md").read_text()
    edited = re.sub(r"(<!-- table:ops -->\n\| op)", r"\1 (edited)", text, count=1)
    assert edited != text and mod.render(edited) == text
