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


def _run(code: str) -> tuple[str, dict]:
    """Run one snippet in a fresh namespace, as a reader pasting it alone into a new interpreter would."""
    out, scope = io.StringIO(), {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), scope)
    return out.getvalue(), scope


def _check_grow_your_own(text: str, scope: dict, tmp_path: Path) -> None:
    assert "16 ['conv1'] ['conv2'] resizable" in text and "10 ['head'] [] fixed: the network output" in text
    # the grown model computes the same function: the two printed max-differences are tiny
    diffs = [float(v) for v in re.findall(r"tensor\(([-+0-9.e]+)\)", text)]
    assert len(diffs) == 2 and max(diffs) < 1e-5


def _check_errors(text: str, scope: dict, tmp_path: Path) -> None:
    assert "narrower than its current width 16" in text and "never widened" in text
    assert "cannot run on example_input of shape (2, 3, 28, 28)" in text
    assert scope["net"][0].out_channels == 16  # untouched


def _check_transformers(text: str, scope: dict, tmp_path: Path) -> None:
    assert text.splitlines()[-2:] == ["True", "3 True"]
    assert scope["small"].transformer.h[0].mlp.c_fc.nf == 192 and scope["model"].transformer.h[0].attn.split_size == 32


def _check_families(text: str, scope: dict, tmp_path: Path) -> None:
    assert scope["plain"].features is not None and int(text.splitlines()[-1]) > 0


def _check_gpt(text: str, scope: dict, tmp_path: Path) -> None:
    assert text.splitlines()[-1] == "4 128 True"  # grown to 4 blocks, d_model 128, same logits
    assert len(scope["bigger"].blocks) == 4


def _check_training(text: str, scope: dict, tmp_path: Path) -> None:
    assert scope["result"].test_acc > 0.5
    assert (tmp_path / "runs" / "readme-mlp" / "final.safetensors").is_file()


def _check_grow_loop(text: str, scope: dict, tmp_path: Path) -> None:
    """Grow inside your own training loop: the loss is unchanged by each growth, training goes on."""
    growths = re.findall(r"loss ([0-9.]+) before growth, ([0-9.]+) after", text)
    assert len(growths) == 2 and all(a == b for a, b in growths)
    assert float(re.search(r"step 60: loss ([0-9.]+)", text).group(1)) < float(growths[0][0])
    assert type(scope["opt"]).__name__ == "SGD" and scope["sched"].optimizer is scope["opt"]


def _check_wsd(text: str, scope: dict, tmp_path: Path) -> None:
    assert "True schedule" in text and scope["res"].history[-1]["val_acc"] is not None
    assert len(scope["fit"]) + len(scope["val"]) == len(scope["train"])


CHECKS = [
    _check_grow_your_own, _check_errors, _check_transformers, _check_families, _check_gpt, _check_training,
    _check_grow_loop, _check_wsd,
]  # fmt: skip


def test_every_snippet_is_checked():
    assert len(_snippets()) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(CHECKS)))
def test_readme_snippet_runs_alone_and_twice(index, tmp_path, monkeypatch):
    """Each snippet runs by itself (its own imports) and a second time in the same directory (a reader
    running it again must not hit "run directory exists"), printing what the README says both times."""
    monkeypatch.chdir(tmp_path)
    code = _snippets()[index]
    first, scope = _run(code)
    CHECKS[index](first, scope, tmp_path)
    second, scope = _run(code)
    CHECKS[index](second, scope, tmp_path)


@pytest.mark.parametrize("doc", ["docs/architecture.md", "docs/cli.md", "docs/analysis.md", "BENCHMARKS.md"])
def test_linked_docs_exist(doc):
    assert (README.parent / doc).is_file(), f"README links {doc}, which does not exist"


def test_architecture_doc_examples_run():
    import doctest

    result = doctest.testfile(str(README.parent / "docs" / "architecture.md"), module_relative=False)
    assert result.attempted >= 1 and result.failed == 0
