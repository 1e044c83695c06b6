"""Any ImageFolder-style tree: ``root/<class>/*.png|jpg|…``.

Splits: if ``root/train`` exists it is the training set and ``root/val`` (else ``root/test``) the
test set; without such sub-folders (or without a val/test folder) a seeded, per-class (stratified)
split of the training images is made with ``test_fraction``. Class names are the sorted
sub-directory names of the training folder; labels are their indices.

``in_memory=True`` (default) decodes everything into one ``uint8`` tensor (optionally cached as
``.npz``); ``in_memory=False`` returns an :class:`ImageFileDataset` that decodes files on access,
for trees that do not fit in memory (:func:`netgrow.data.make_loader` gives it a torch DataLoader).

Example::

    >>> from netgrow.data.imagefolder import load_imagefolder
    >>> train, test = load_imagefolder("/data/flowers", size=(32, 32))   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from netgrow.data.base import InMemoryDataset, channel_stats, normalize
from netgrow.data.images import cache_dir as default_cache_dir
from netgrow.data.images import cached_arrays, fingerprint, is_image, read_image, read_images
from netgrow.errors import DataError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["load_imagefolder", "ImageFileDataset"]

#: How many training images a lazy data set decodes to estimate its normalisation statistics.
_STATS_SAMPLE = 2000


class ImageFileDataset(Dataset):
    """Images decoded from files on access; same attributes as :class:`InMemoryDataset`.

    Without ``size`` every image must have the size of the first one (a mismatch is a
    :class:`DataError` when that image is read).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int] | torch.Tensor,
        classes: Sequence[str],
        name: str,
        mean: Sequence[float],
        std: Sequence[float],
        mode: str = "RGB",
        size: tuple[int, int] | None = None,
        class_order: Sequence[int] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.targets = torch.as_tensor(targets, dtype=torch.int64).reshape(-1)
        if len(self.paths) != self.targets.shape[0]:
            raise DataError(f"netgrow.data: {name}: {len(self.paths)} files but {self.targets.shape[0]} labels")
        self.classes = [str(c) for c in classes]
        self.name = name
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.mode = mode
        self.resize = size is not None
        if size is None and self.paths:
            size = tuple(read_image(self.paths[0], mode).shape[1:])  # type: ignore[assignment]
        self.size = size
        self.class_order = list(range(len(self.classes))) if class_order is None else list(class_order)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        channels = 3 if self.mode == "RGB" else 1
        return (channels, *self.size) if self.size is not None else (channels,)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raw = read_image(self.paths[index], self.mode, self.size if self.resize else None)
        if self.size is not None and tuple(raw.shape[1:]) != tuple(self.size):
            raise DataError(
                f"netgrow.data: {self.paths[index]} is {raw.shape[1]}×{raw.shape[2]}, expected "
                f"{self.size[0]}×{self.size[1]}; pass size=(H, W) to resize every image"
            )
        x = normalize(torch.from_numpy(raw).unsqueeze(0), self.mean, self.std)
        return x[0], int(self.targets[index])

    def raw_fill(self) -> tuple[float, ...]:
        """Per-channel normalised value of a black pixel, used to pad crops."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))

    def select(
        self,
        indices: torch.Tensor,
        label_map: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
        name: str | None = None,
        class_order: Sequence[int] | None = None,
    ) -> "ImageFileDataset":
        """The files at ``indices``, labels mapped through ``label_map`` (stats inherited)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        targets = self.targets[indices]
        if label_map is not None:
            targets = label_map[targets]
        return ImageFileDataset(
            [self.paths[i] for i in indices.tolist()],
            targets,
            self.classes if classes is None else classes,
            self.name if name is None else name,
            self.mean,
            self.std,
            self.mode,
            self.size if self.resize else None,
            self.class_order if class_order is None else class_order,
        )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(folder: Path, classes: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """Files and labels under ``folder``; ``classes=None`` takes the class list from the folder."""
    dirs = _class_dirs(folder)
    if classes is None:
        classes = []
        for d in dirs:
            if any(is_image(p) for p in d.iterdir()):
                classes.append(d.name)
            else:
                log.warning("netgrow.data: skipping %s: no image files", d)
        if not classes:
            raise DataError(
                f"netgrow.data: no class sub-directories with images in {folder}; an ImageFolder tree is "
                "ROOT/<class>/*.png (or ROOT/train/<class>/… and ROOT/val/<class>/…)"
            )
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        files = sorted(p for p in d.iterdir() if is_image(p))
        if not files:
            continue
        if d.name not in index:
            raise DataError(
                f"netgrow.data: {d} is a class that the training folder does not have "
                f"(training classes: {classes})"
            )
        paths += files
        labels += [index[d.name]] * len(files)
    if not paths:
        raise DataError(f"netgrow.data: no image files under {folder}")
    return classes, paths, labels


def _stratified_split(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded per-class split: each class gives round(test_fraction·n) samples (≥1 kept for training)."""
    y = torch.tensor(labels)
    gen = torch.Generator().manual_seed(seed)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for c in range(int(y.max()) + 1):
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_test = min(int(np.floor(test_fraction * len(members) + 0.5)), len(members) - 1)
        test_idx += members[:n_test].tolist()
        train_idx += members[n_test:].tolist()
    return sorted(train_idx), sorted(test_idx)


def load_imagefolder(
    root: str | os.PathLike | None,
    size: tuple[int, int] | int | None = None,
    mode: str = "RGB",
    test_fraction: float = 0.2,
    seed: int = 0,
    in_memory: bool = True,
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    name: str = "imagefolder",
) -> tuple[Dataset, Dataset]:
    """Load an ImageFolder tree as ``(train, test)``; see the module docstring for the layout."""
    if root is None:
        raise NetgrowValueError(
            "netgrow.data.load('imagefolder') needs root=DIR, a directory of class sub-directories "
            "(DIR/<class>/*.png) or DIR/train and DIR/val (or DIR/test)"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"netgrow.data: ImageFolder root {base} does not exist or is not a directory")
    if mode not in ("RGB", "L"):
        raise NetgrowValueError(f"netgrow.data.load_imagefolder: mode={mode!r}; use 'RGB' or 'L'")
    if isinstance(size, int):
        size = (size, size)
    if not 0.0 < test_fraction < 1.0:
        raise NetgrowValueError(f"netgrow.data.load_imagefolder: test_fraction={test_fraction}; use a value in (0, 1)")

    train_dir = base / "train" if (base / "train").is_dir() else base
    test_dir = next((base / s for s in ("val", "test") if train_dir != base and (base / s).is_dir()), None)
    classes, paths, labels = _scan(train_dir, None)
    if test_dir is not None:
        _, test_paths, test_labels = _scan(test_dir, classes)
        train_paths, train_labels = paths, labels
        log.info("ImageFolder %s: train %s, test %s", base, train_dir, test_dir)
    else:
        tr, te = _stratified_split(labels, test_fraction, seed)
        if not te:
            raise DataError(
                f"netgrow.data: {train_dir} has too few images per class for a test split "
                f"(test_fraction={test_fraction}); add images or a val/ folder"
            )
        train_paths, train_labels = [paths[i] for i in tr], [labels[i] for i in tr]
        test_paths, test_labels = [paths[i] for i in te], [labels[i] for i in te]
        log.info("ImageFolder %s: seeded split (seed=%d, test_fraction=%g)", base, seed, test_fraction)

    if not in_memory:
        gen = torch.Generator().manual_seed(seed)
        sample = torch.randperm(len(train_paths), generator=gen)[:_STATS_SAMPLE].tolist()
        first = read_image(train_paths[0], mode, size)
        stats_size = size if size is not None else tuple(first.shape[1:])
        raw = read_images([train_paths[i] for i in sample], mode, stats_size, desc="stats", progress=progress)
        mean, std = channel_stats(torch.from_numpy(raw))
        train = ImageFileDataset(train_paths, train_labels, classes, name, mean, std, mode, size)
        test = ImageFileDataset(test_paths, test_labels, classes, name, mean, std, mode, size)
        return train, test

    def build() -> dict[str, np.ndarray]:
        # one pass over both splits, so an odd-sized image is reported by name wherever it is
        everything = read_images(train_paths + test_paths, mode, size, desc=name, progress=progress)
        return {"train_x": everything[: len(train_paths)], "test_x": everything[len(train_paths) :]}

    directory = None
    if cache:
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = f"{name}-" + fingerprint(train_paths + test_paths, extra=f"{base.resolve()}|{mode}|{size}")
    arrays = cached_arrays(key, build, directory)
    x_tr, x_te = torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["test_x"])
    mean, std = channel_stats(x_tr)
    train_ds = InMemoryDataset(x_tr, train_labels, classes, name=name, mean=mean, std=std)
    test_ds = InMemoryDataset(x_te, test_labels, classes, name=name, mean=mean, std=std)
    return train_ds, test_ds
