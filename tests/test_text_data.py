"""Character-level corpora: the fortunes directory format, a user's text file, splits by document."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from netgrow.data import load
from netgrow.data.text import FORTUNES_DIR, read_fortune_documents
from netgrow.errors import DataError, NetgrowValueError


def fortune_dir(tmp_path: Path, n_files: int = 3, per_file: int = 10) -> Path:
    root = tmp_path / "fortunes"
    root.mkdir()
    for f in range(n_files):
        docs = [f"fortune {f}-{i}: {'abc' * (i + 1)}\nsecond line {i}\n" for i in range(per_file)]
        (root / f"file{f}").write_text("%\n".join(docs))
        (root / f"file{f}.dat").write_bytes(b"\x00\x02\xff binary index")  # skipped: index files
        os.symlink(root / f"file{f}", root / f"file{f}.u8")  # skipped: symlinks
    return root


def test_fortune_files_become_documents_skipping_indexes_and_symlinks(tmp_path: Path) -> None:
    docs = read_fortune_documents(fortune_dir(tmp_path))
    assert len(docs) == 30
    assert docs[0] == "fortune 0-0: abc\nsecond line 0\n"
    assert all("binary" not in d for d in docs)


def test_splits_are_by_document_seeded_and_share_the_vocabulary(tmp_path: Path) -> None:
    root = fortune_dir(tmp_path, per_file=20)
    train, val, test = load("fortunes", root=root, block_size=8, val_fraction=0.1, test_fraction=0.2, validation=True)
    assert (train.documents, val.documents, test.documents) == (42, 6, 12)
    assert train.vocab == val.vocab == test.vocab and train.num_classes == train.vocab_size == len(train.vocab)
    streams = {}
    for ds in (train, val, test):
        x, y = ds.tensors
        assert x.shape[1] == 8 and torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one character
        assert torch.equal(x.reshape(-1)[8:], y.reshape(-1)[7:-1])  # windows tile the stream
        streams[ds.name] = ds.decode(torch.cat([x.reshape(-1), y[-1, -1:]]))
    # each fortune lies wholly inside exactly one split's stream (windows may cut the tail of a split)
    for doc in read_fortune_documents(root)[:20]:
        assert sum(doc in s for s in streams.values()) <= 1
    again = load("fortunes", root=root, block_size=8, val_fraction=0.1, test_fraction=0.2, validation=True)
    assert all(torch.equal(a.tensors[0], b.tensors[0]) for a, b in zip((train, val, test), again))
    other = load("fortunes", root=root, block_size=8, val_fraction=0.1, test_fraction=0.2, seed=1, validation=True)
    assert not torch.equal(val.tensors[0][:2], other[1].tensors[0][:2])
    two = load("fortunes", root=root, block_size=8, val_fraction=0.1, test_fraction=0.2)
    assert len(two) == 2 and torch.equal(two[1].tensors[0], test.tensors[0])


def test_text_loader_splits_paragraphs_or_positions(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(f"Paragraph {i}.\nIt has two lines." for i in range(50)) + "\n")
    train, val, test = load("text", root=path, block_size=16, validation=True)
    assert (train.documents, val.documents, test.documents) == (46, 2, 2)
    ptrain, pval, ptest = load("text", root=path, block_size=16, separator=None, validation=True)
    text = path.read_text()
    assert ptrain.decode(ptrain.tensors[0][0]) == text[:16]  # position split: the file's beginning first
    assert ptrain.characters + pval.characters + ptest.characters == len(text)


def test_text_loader_refusals(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("just one paragraph without blank lines\n")
    with pytest.raises(DataError, match="cannot be split"):
        load("text", root=path)
    with pytest.raises(DataError, match="not found"):
        load("text", root=tmp_path / "missing.txt")
    with pytest.raises(NetgrowValueError, match='load\\("text", root='):
        load("text")
    with pytest.raises(NetgrowValueError, match="val_fraction"):
        load("text", root=path, separator=None, val_fraction=0.0)
    with pytest.raises(DataError, match="block_size=64"):
        load("text", root=path, separator=None, block_size=64)
    with pytest.raises(DataError, match="apt-get install fortunes"):
        load("fortunes", root=tmp_path / "nowhere")


@pytest.mark.skipif(not Path(FORTUNES_DIR).is_dir(), reason="Debian package fortunes not installed (make data)")
def test_the_installed_fortunes_corpus() -> None:
    train, val, test = load("fortunes", block_size=64, validation=True)
    assert train.documents > 10_000 and val.documents == test.documents > 500
    assert train.characters > 2_000_000 and 90 <= train.vocab_size <= 130
