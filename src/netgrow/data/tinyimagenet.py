"""TinyImageNet-200 from its standard directory layout.

::

    tiny-imagenet-200/
        wnids.txt                          one WordNet id per line (the 200 classes)
        words.txt                          optional: "wnid<TAB>names", used for class names
        train/<wnid>/images/*.JPEG         500 per class
        val/images/*.JPEG                  10,000 images
        val/val_annotations.txt            "file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1"

The labelled ``val`` split is returned as the test set (the official test split has no labels).
Labels follow the *sorted* wnids (as an ImageFolder would). Decoding 110k JPEGs takes a while, so
the decoded arrays are cached as ``.npz`` in :func:`netgrow.data.images.cache_dir` (``cache=False``
to skip, ``cache_dir=...`` to choose the place); the cache key changes when any file changes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from netgrow.data.base import InMemoryDataset, channel_stats
from netgrow.data.images import cache_dir as default_cache_dir
from netgrow.data.images import cached_arrays, fingerprint, is_image, read_images
from netgrow.data.locate import DATA_ROOT_ENV, candidate_dirs, describe
from netgrow.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["load_tinyimagenet"]

_FIX = (
    "extract tiny-imagenet-200.zip (from the CS231n course page) under a directory DIR, then pass "
    f"root=DIR or set {DATA_ROOT_ENV}=DIR"
)


def _find_root(root: str | os.PathLike | None) -> Path:
    dirs = candidate_dirs(root, subdirs=("tiny-imagenet-200",))
    for d in dirs:
        if (d / "wnids.txt").is_file():
            return d
    raise DataError(f"netgrow.data: TinyImageNet not found: no tiny-imagenet-200/wnids.txt in {describe(dirs)}; {_FIX}")


def _class_names(d: Path, wnids: list[str]) -> list[str]:
    words = d / "words.txt"
    if not words.is_file():
        return wnids
    table = {}
    for line in words.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t", 1)
        if len(parts) == 2:
            table[parts[0]] = parts[1].strip()
    return [table.get(w, w) for w in wnids]


def _listing(d: Path) -> tuple[list[str], list[Path], list[int], list[Path], list[int]]:
    wnids = sorted({w.strip() for w in (d / "wnids.txt").read_text().splitlines() if w.strip()})
    if not wnids:
        raise DataError(f"netgrow.data: {d / 'wnids.txt'} lists no classes")
    index = {w: i for i, w in enumerate(wnids)}
    train_paths: list[Path] = []
    train_labels: list[int] = []
    for w in wnids:
        img_dir = d / "train" / w / "images"
        if not img_dir.is_dir():
            raise DataError(f"netgrow.data: TinyImageNet train directory {img_dir} is missing; {_FIX}")
        files = sorted(p for p in img_dir.iterdir() if is_image(p))
        if not files:
            raise DataError(f"netgrow.data: TinyImageNet train directory {img_dir} has no images")
        train_paths += files
        train_labels += [index[w]] * len(files)
    ann = d / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"netgrow.data: TinyImageNet file {ann} is missing; {_FIX}")
    val_paths: list[Path] = []
    val_labels: list[int] = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(f"netgrow.data: {ann} line {n} is malformed: {line!r} (expected file<TAB>wnid…)")
        if parts[1] not in index:
            raise DataError(f"netgrow.data: {ann} line {n}: wnid {parts[1]!r} is not in wnids.txt")
        p = d / "val" / "images" / parts[0]
        if not p.is_file():
            raise DataError(f"netgrow.data: TinyImageNet validation image {p} (from {ann} line {n}) is missing")
        val_paths.append(p)
        val_labels.append(index[parts[1]])
    if not val_paths:
        raise DataError(f"netgrow.data: {ann} lists no images")
    return wnids, train_paths, train_labels, val_paths, val_labels


def load_tinyimagenet(
    root: str | os.PathLike | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    size: tuple[int, int] = (64, 64),
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """TinyImageNet-200: 100,000 train / 10,000 val colour 64×64 images as ``uint8`` N×3×64×64.

    Images of another size are resized (bilinear) to ``size``.
    """
    d = _find_root(root)
    wnids, train_paths, train_labels, val_paths, val_labels = _listing(d)
    log.info("TinyImageNet at %s: %d train, %d val images", d, len(train_paths), len(val_paths))

    def build() -> dict[str, np.ndarray]:
        return {
            "train_x": read_images(train_paths, "RGB", tuple(size), desc="TinyImageNet train", progress=progress),
            "val_x": read_images(val_paths, "RGB", tuple(size), desc="TinyImageNet val", progress=progress),
        }

    directory = None
    if cache:
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = "tinyimagenet-" + fingerprint(train_paths + val_paths, extra=f"{d.resolve()}|{tuple(size)}")
    arrays = cached_arrays(key, build, directory)
    x_tr = torch.from_numpy(arrays["train_x"])
    x_te = torch.from_numpy(arrays["val_x"])
    if x_tr.shape[0] != len(train_labels) or x_te.shape[0] != len(val_labels):
        raise DataError(f"netgrow.data: TinyImageNet cache {key}.npz does not match the files; delete it")
    classes = _class_names(d, wnids)
    mean, std = channel_stats(x_tr)
    train = InMemoryDataset(x_tr, train_labels, classes, name="tinyimagenet", mean=mean, std=std)
    test = InMemoryDataset(x_te, val_labels, classes, name="tinyimagenet", mean=mean, std=std)
    train.wnids = wnids  # type: ignore[attr-defined]
    test.wnids = wnids  # type: ignore[attr-defined]
    return train, test
