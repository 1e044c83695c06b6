"""The README's Python snippets run as written (in a temporary directory) and print what they claim."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_snippets():
    assert len(_snippets()) >= 3


def test_readme_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        for code in _snippets():  # later snippets may use names from earlier ones, as a reader would
            exec(compile(code, str(README), "exec"), scope)
    text = out.getvalue()
    assert "narrower than its current width 16" in text
    assert "never widened" in text
    # the grown model computes the same function: the two printed max-differences are tiny
    diffs = [float(v) for v in re.findall(r"tensor\(([-+0-9.e]+)\)", text)]
    assert len(diffs) == 2 and max(diffs) < 1e-5
    assert scope["plain"].features is not None and scope["result"].test_acc > 0.5
    assert (tmp_path / "runs" / "readme-mlp" / "final.safetensors").is_file()
    assert "True schedule" in text and scope["res"].history[-1]["val_acc"] is not None  # the WSD snippet


@pytest.mark.parametrize("doc", ["docs/architecture.md", "docs/cli.md", "docs/analysis.md", "BENCHMARKS.md"])
def test_linked_docs_exist(doc):
    assert (README.parent / doc).is_file(), f"README links {doc}, which does not exist"


def test_architecture_doc_examples_run():
    import doctest

    result = doctest.testfile(str(README.parent / "docs" / "architecture.md"), module_relative=False)
    assert result.attempted >= 1 and result.failed == 0
