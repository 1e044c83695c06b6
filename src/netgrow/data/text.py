"""Character-level text corpora for next-token training: the Debian ``fortunes`` files and any text file.

A corpus is a list of documents. The documents are shuffled with a seeded generator and split by
document (``val_fraction`` and ``test_fraction`` of them, at least one each), so no fortune is cut between
splits; each split is the concatenation of its documents (each followed by the separator line ``%``),
encoded one token per character. The vocabulary is every character of the whole corpus, sorted, so the
validation and test splits never meet an unknown character. A split is served as non-overlapping
windows of ``block_size + 1`` characters: ``x = ids[i·T : i·T + T]``, ``y = ids[i·T + 1 : i·T + T + 1]``.

- ``load("fortunes")``: ``/usr/share/games/fortunes/`` (Debian package ``fortunes``; another directory
  via ``root`` or ``NETGROW_FORTUNES``). Every regular file except the ``.dat`` index files and the
  ``.u8`` symlinks, read in name order; documents are separated by lines holding only ``%``.
- ``load("text", root="book.txt")``: one user file; ``separator`` splits it into documents (default: a
  blank line, i.e. paragraphs); ``separator=None`` splits by position instead (first 90 % train, then
  validation, then test, nanoGPT style).

``load(...)`` returns ``(train, test)``; pass ``validation=True`` for ``(train, val, test)``.

Example::

    >>> import tempfile, pathlib
    >>> from netgrow.data import load
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = path.write_text("\\n\\n".join(f"paragraph {i} of a small book." for i in range(40)))
    >>> train, val, test = load("text", root=path, block_size=16, validation=True)
    >>> x, y = train[0]
    >>> x.shape, bool((x[1:] == y[:-1]).all()), train.vocab_size == test.vocab_size
    (torch.Size([16]), True, True)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from netgrow.errors import DataError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["TextDataset", "load_fortunes", "load_text", "read_fortune_documents", "FORTUNES_DIR"]

FORTUNES_DIR = "/usr/share/games/fortunes"
DOC_END = "%\n"  # written after every document: the fortune files' own separator


class TextDataset(TensorDataset):
    """Windows of one split: ``ds[i] = (x, y)``, both ``int64`` of length ``block_size``, y shifted by one.

    Attributes: ``vocab`` (the characters, token id = position), ``vocab_size`` (= ``num_classes``),
    ``block_size``, ``name``, ``documents`` (in this split), ``characters`` (in this split's stream),
    ``targets`` (all windows' next tokens, ``(N, block_size)``).
    """

    def __init__(self, ids: torch.Tensor, vocab: Sequence[str], block_size: int, name: str, documents: int):
        n = (ids.numel() - 1) // block_size
        if n < 1:
            raise DataError(
                f"netgrow.data: {name}: {ids.numel()} characters do not fill one window of block_size={block_size} "
                "(+1); use a smaller block_size or a larger split"
            )
        x = ids[: n * block_size].view(n, block_size)
        y = ids[1 : n * block_size + 1].view(n, block_size)
        super().__init__(x, y)
        self.vocab = list(vocab)
        self.block_size = block_size
        self.name = name
        self.documents = documents
        self.characters = int(ids.numel())

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    @property
    def targets(self) -> torch.Tensor:
        return self.tensors[1]

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of a sequence of token ids."""
        return "".join(self.vocab[int(i)] for i in ids)


def read_fortune_documents(root: str | os.PathLike[str]) -> list[str]:
    """The fortunes of every data file in ``root`` (no ``.dat``/``.u8``, no symlinks), in file-name order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"netgrow.data: fortunes directory {str(root)!r} not found; install the Debian package "
            "(sudo apt-get install fortunes, or `make data`) or pass root= / set NETGROW_FORTUNES"
        )
    docs: list[str] = []
    files = sorted(
        p for p in root.iterdir() if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
    )
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        docs += _split_lines(text, "%")
    if not docs:
        raise DataError(f"netgrow.data: no fortunes found in {str(root)!r} (files: {[p.name for p in files][:5]})")
    return docs


def _split_lines(text: str, marker: str) -> list[str]:
    """Documents separated by lines that hold only ``marker``; empty documents dropped."""
    docs, current = [], []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == marker:
            docs.append("".join(current))
            current = []
        else:
            current.append(line)
    docs.append("".join(current))
    return [d if d.endswith("\n") else d + "\n" for d in docs if d.strip()]


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < v < 1:
            raise NetgrowValueError(f"netgrow.data: {key}={v!r} is invalid; use a fraction in (0, 1)")
    if val_fraction + test_fraction >= 1:
        raise NetgrowValueError(
            f"netgrow.data: val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data; "
            "keep their sum below 1"
        )


def split_documents(
    docs: Sequence[str], name: str, block_size: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[TextDataset, TextDataset, TextDataset]:
    """Shuffle ``docs`` (seeded), split by document, encode with the corpus-wide vocabulary."""
    _check_fractions(val_fraction, test_fraction)
    if len(docs) < 3:
        raise DataError(
            f"netgrow.data: {name}: {len(docs)} document(s) cannot be split into train/validation/test by "
            "document; use a different separator, or separator=None to split by position"
        )
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(int(seed))).tolist()
    n_val = max(1, round(val_fraction * len(docs)))
    n_test = max(1, round(test_fraction * len(docs)))
    parts = {
        "val": [docs[i] for i in order[:n_val]],
        "test": [docs[i] for i in order[n_val : n_val + n_test]],
        "train": [docs[i] for i in order[n_val + n_test :]],
    }
    vocab = sorted(set("".join(docs)) | set(DOC_END))
    lookup = {c: i for i, c in enumerate(vocab)}
    out = {}
    for split, part in parts.items():
        stream = "".join(d + DOC_END for d in part)
        ids = torch.tensor([lookup[c] for c in stream], dtype=torch.int64)
        out[split] = TextDataset(ids, vocab, block_size, f"{name}/{split}", len(part))
    return out["train"], out["val"], out["test"]


def _split_positions(
    text: str, name: str, block_size: int, val_fraction: float, test_fraction: float
) -> tuple[TextDataset, TextDataset, TextDataset]:
    _check_fractions(val_fraction, test_fraction)
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.int64)
    a = round(len(text) * (1 - val_fraction - test_fraction))
    b = round(len(text) * (1 - test_fraction))
    return (
        TextDataset(ids[:a], vocab, block_size, f"{name}/train", 1),
        TextDataset(ids[a:b], vocab, block_size, f"{name}/val", 1),
        TextDataset(ids[b:], vocab, block_size, f"{name}/test", 1),
    )


def _check_block(block_size: int) -> None:
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise NetgrowValueError(f"netgrow.data: block_size={block_size!r} is invalid; use an integer >= 1")


def load_fortunes(
    root: str | os.PathLike[str] | None = None,
    block_size: int = 128,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    validation: bool = False,
) -> tuple[TextDataset, ...]:
    """The Debian fortunes as a character-level corpus, split by fortune (see the module docstring)."""
    _check_block(block_size)
    root = root or os.environ.get("NETGROW_FORTUNES") or FORTUNES_DIR
    docs = read_fortune_documents(root)
    train, val, test = split_documents(docs, "fortunes", block_size, val_fraction, test_fraction, seed)
    log.info("fortunes: %d documents, %d characters, vocabulary %d", len(docs), sum(map(len, docs)), train.vocab_size)
    return (train, val, test) if validation else (train, test)


def load_text(
    root: str | os.PathLike[str] | None = None,
    block_size: int = 128,
    separator: str | None = "",
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    validation: bool = False,
    encoding: str = "utf-8",
) -> tuple[TextDataset, ...]:
    """One text file as a character-level corpus.

    ``separator``: documents are separated by lines equal to it (default ``""``: blank lines, i.e.
    paragraphs; ``"%"`` for fortune-style files); ``None``: split by position instead of by document.
    """
    _check_block(block_size)
    if root is None:
        raise NetgrowValueError('netgrow.data: load("text") needs the file: load("text", root="path/to/file.txt")')
    path = Path(root)
    if not path.is_file():
        raise DataError(f"netgrow.data: text file {str(path)!r} not found; pass the path of a text file as root=")
    text = path.read_text(encoding=encoding, errors="replace")
    if not text:
        raise DataError(f"netgrow.data: text file {str(path)!r} is empty")
    name = path.stem
    if separator is None:
        splits = _split_positions(text, name, block_size, val_fraction, test_fraction)
    else:
        splits = split_documents(_split_lines(text, separator), name, block_size, val_fraction, test_fraction, seed)
    return splits if validation else (splits[0], splits[2])
