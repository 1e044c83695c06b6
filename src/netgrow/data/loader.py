"""Seeded, resumable, shardable batch loaders.

:class:`TensorLoader` serves in-memory data: the whole set is moved to the device once, batches are
slices (no shuffle) or ``index_select`` (shuffle), so an epoch on CPU costs little more than the
copies. The sample order of epoch ``e`` is a pure function of ``(seed, e)`` — a ``torch.Generator``
seeded with ``seed·1_000_003 + e`` draws ``randperm(N)`` — so a run resumes exactly from
``(epoch, batch index)`` alone: ``loader.set_epoch(e); loader.iter_from(k)``.

Distributed (``world_size > 1``): every rank draws the same permutation, pads it by repeating its
head (or drops its tail with ``drop_last=True``) to a multiple of ``world_size`` and takes
``order[rank::world_size]``, as ``DistributedSampler`` does, so shards are disjoint (up to the
padding) and of equal size.

Augmentation (``"crop_flip"``, ``"crop"``, ``"flip"`` or a callable ``(x, generator) -> x``) runs on
the normalised batch on the device, with a generator seeded from (seed, epoch, batch, rank).

:func:`make_loader` returns a :class:`TensorLoader` for in-memory data and otherwise a
:class:`DatasetLoader`: a standard ``torch.utils.data.DataLoader`` (``.loader``) driven by a sampler
with the same order, sharding and resume semantics, plus the same augmentation on the device.

Example::

    >>> import torch
    >>> from netgrow.data.loader import TensorLoader
    >>> loader = TensorLoader((torch.randn(10, 3), torch.arange(10)), batch_size=4, seed=0)
    >>> [len(y) for _, y in loader], len(loader)
    ([4, 4, 2], 3)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from netgrow.data.base import normalize
from netgrow.data.transforms import Augment, mix_seed, resolve_augment
from netgrow.errors import DataError, NetgrowTypeError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["TensorLoader", "DatasetLoader", "make_loader", "epoch_order", "is_in_memory"]

#: Above this many bytes of float32, uint8 images stay uint8 on the device and are normalised per
#: batch (TinyImageNet as float32 would need 4.9 GB); the values are identical either way.
MAX_FLOAT_BYTES = 1 << 30

_ORDER_MULT = 1_000_003
_AUGMENT_SALT = 0xA06  # keeps augmentation seeds apart from the order seeds


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The sample order of one epoch (CPU int64): ``randperm(n)`` seeded by ``seed·1_000_003 + epoch``."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed((int(seed) * _ORDER_MULT + int(epoch)) % (1 << 63))
    return torch.randperm(n, generator=gen)


def _shard(order: torch.Tensor, rank: int, world_size: int, drop_last: bool) -> torch.Tensor:
    if world_size == 1:
        return order
    n = order.shape[0]
    if drop_last:
        order = order[: n - n % world_size]
    else:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            reps = math.ceil((total - n) / n)
            order = torch.cat([order, order.repeat(reps)[: total - n]])
    return order[rank::world_size]


def _per_rank(n: int, world_size: int, drop_last: bool) -> int:
    return n // world_size if drop_last else math.ceil(n / world_size)


def _check_common(n: int, batch_size: Any, rank: Any, world_size: Any, drop_last: bool, what: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NetgrowValueError(f"netgrow.data.{what}: batch_size={batch_size!r}; use an int >= 1")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise NetgrowValueError(f"netgrow.data.{what}: world_size={world_size!r}; use an int >= 1")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise NetgrowValueError(f"netgrow.data.{what}: rank={rank!r}; use an int in [0, {world_size})")
    if n == 0:
        raise DataError(f"netgrow.data.{what}: the data set is empty; check the data path or the class subset")
    per_rank = _per_rank(n, world_size, drop_last)
    if per_rank == 0:
        raise DataError(
            f"netgrow.data.{what}: {n} samples cannot be split over world_size={world_size} ranks with "
            "drop_last=True; use drop_last=False or fewer ranks"
        )
    if drop_last and batch_size > per_rank:
        raise DataError(
            f"netgrow.data.{what}: batch_size={batch_size} is larger than the {per_rank} samples per rank, "
            "so drop_last=True would give no batch; lower batch_size or use drop_last=False"
        )


class _Schedule:
    """Order, sharding, batch count and augmentation seeding shared by both loaders."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool, rank: int, world_size: int):
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    @property
    def samples_per_rank(self) -> int:
        return _per_rank(self.n, self.world_size, self.drop_last)

    def __len__(self) -> int:
        m, b = self.samples_per_rank, self.batch_size
        return m // b if self.drop_last else math.ceil(m / b)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        e = self.epoch if epoch is None else int(epoch)
        order = _shard(epoch_order(self.n, self.seed, e, self.shuffle), self.rank, self.world_size, self.drop_last)
        return order[: len(self) * self.batch_size] if self.drop_last else order

    def check_start(self, start_batch: int) -> None:
        if isinstance(start_batch, bool) or not isinstance(start_batch, int) or not 0 <= start_batch <= len(self):
            raise NetgrowValueError(
                f"netgrow.data: iter_from({start_batch!r}); use a batch index in [0, {len(self)}]"
            )

    def augment_generator(self, batch: int) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, batch, self.rank, _AUGMENT_SALT))


def is_in_memory(dataset: Any) -> bool:
    """True for data a :class:`TensorLoader` can hold: netgrow in-memory sets, TensorDatasets, (x, y)."""
    if isinstance(dataset, tuple):
        return len(dataset) == 2 and all(isinstance(t, torch.Tensor) for t in dataset)
    if isinstance(dataset, TensorDataset):
        return len(dataset.tensors) == 2
    return isinstance(getattr(dataset, "data", None), torch.Tensor) and callable(getattr(dataset, "normalize", None))


class _ScheduledLoader:
    """The epoch/resume interface both loaders share; the order comes from ``self._schedule``.

    Subclasses set ``_schedule`` and implement ``_batches(start)``.
    """

    _schedule: _Schedule

    batch_size = property(lambda self: self._schedule.batch_size)
    shuffle = property(lambda self: self._schedule.shuffle)
    seed = property(lambda self: self._schedule.seed)
    drop_last = property(lambda self: self._schedule.drop_last)
    rank = property(lambda self: self._schedule.rank)
    world_size = property(lambda self: self._schedule.world_size)
    epoch = property(lambda self: self._schedule.epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (including DDP padding, excluding a dropped tail)."""
        return len(self._schedule.indices())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows."""
        self._schedule.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's sample indices for ``epoch`` (default: the current one), in batch order."""
        return self._schedule.indices(epoch)

    def __len__(self) -> int:
        return len(self._schedule)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate the current epoch from batch ``start_batch`` on (exact resume)."""
        self._schedule.check_start(start_batch)
        return self._batches(start_batch)

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class TensorLoader(_ScheduledLoader):
    """Batches of an in-memory data set on ``device``; see the module docstring.

    ``dataset``: a netgrow in-memory data set (raw data normalised here), a ``TensorDataset`` of
    two tensors, or a tuple ``(x, y)`` (both taken as already normalised).
    Yields ``(x float32 normalised, y int64)``, both on ``device``.
    """

    def __init__(
        self,
        dataset: Dataset | tuple[torch.Tensor, torch.Tensor],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        augment: str | Augment | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        keep_raw: bool | None = None,
    ) -> None:
        if not is_in_memory(dataset):
            raise NetgrowTypeError(
                f"netgrow.data.TensorLoader: {type(dataset).__name__} is not an in-memory data set; "
                "use netgrow.data.make_loader, which gives such data sets a torch DataLoader"
            )
        self.dataset = dataset
        self.device = torch.device(device)
        self._normalize_stats: tuple[Sequence[float], Sequence[float]] | None = None
        fill: Any = 0.0
        if isinstance(dataset, tuple) or isinstance(dataset, TensorDataset):
            x, y = dataset if isinstance(dataset, tuple) else dataset.tensors
            if x.shape[0] != y.shape[0]:
                raise DataError(f"netgrow.data.TensorLoader: {x.shape[0]} inputs but {y.shape[0]} labels")
            self.x = x.to(self.device)
            self.y = torch.as_tensor(y).to(self.device, torch.int64)
        else:
            raw = dataset.data
            if keep_raw is None:
                keep_raw = raw.dtype == torch.uint8 and raw.numel() * 4 > MAX_FLOAT_BYTES
            if keep_raw:
                self.x = raw.to(self.device)
                self._normalize_stats = (dataset.mean, dataset.std)
            else:
                self.x = dataset.normalize(raw.to(self.device))
            self.y = dataset.targets.to(self.device, torch.int64)
            fill = dataset.raw_fill() if hasattr(dataset, "raw_fill") else 0.0
        n = int(self.x.shape[0])
        _check_common(n, batch_size, rank, world_size, drop_last, "TensorLoader")
        self._schedule = _Schedule(n, batch_size, shuffle, seed, drop_last, rank, world_size)
        self.augment = resolve_augment(augment, tuple(self.x.shape[1:]), fill)

    # -- schedule -----------------------------------------------------------------------------
    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        s = self._schedule
        bs = s.batch_size
        contiguous = not s.shuffle and s.world_size == 1
        order = None if contiguous else s.indices().to(self.device)
        for b in range(start, len(s)):
            if contiguous:
                x = self.x[b * bs : (b + 1) * bs]
                y = self.y[b * bs : (b + 1) * bs]
            else:
                idx = order[b * bs : (b + 1) * bs]
                x = self.x.index_select(0, idx)
                y = self.y.index_select(0, idx)
            if self._normalize_stats is not None:
                x = normalize(x, *self._normalize_stats)
            if self.augment is not None:
                x = self.augment(x, s.augment_generator(b))
            yield x, y


class _EpochSampler(Sampler[int]):
    def __init__(self, schedule: _Schedule) -> None:
        self.schedule = schedule
        self.start_batch = 0

    def __iter__(self) -> Iterator[int]:
        order = self.schedule.indices()[self.start_batch * self.schedule.batch_size :]
        return iter(order.tolist())

    def __len__(self) -> int:
        s = self.schedule
        total = len(s) * s.batch_size if s.drop_last else s.samples_per_rank
        return max(0, total - self.start_batch * s.batch_size)


class DatasetLoader(_ScheduledLoader):
    """A torch ``DataLoader`` (``.loader``) with :class:`TensorLoader`'s order, sharding and resume.

    For map-style data sets that are not held in memory (e.g. ``ImageFileDataset``); batches are
    moved to ``device`` and augmented there exactly as :class:`TensorLoader` would.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        augment: str | Augment | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        _check_common(n, batch_size, rank, world_size, drop_last, "make_loader")
        self.dataset = dataset
        self.device = torch.device(device)
        self._schedule = _Schedule(n, batch_size, shuffle, seed, drop_last, rank, world_size)
        self._sampler = _EpochSampler(self._schedule)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self._sampler,
            num_workers=num_workers,
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        shape = getattr(dataset, "input_shape", None)
        if shape is None and augment is not None and not callable(augment):
            shape = tuple(dataset[0][0].shape)
        fill = dataset.raw_fill() if hasattr(dataset, "raw_fill") else 0.0
        self.augment = resolve_augment(augment, shape or (), fill)

    def iter_from(self, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate the current epoch from batch ``start_batch`` on (exact resume)."""
        self._schedule.check_start(start_batch)
        self._sampler.start_batch = start_batch
        return self._batches(start_batch)

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        for b, (x, y) in enumerate(self.loader, start):
            x = x.to(self.device, non_blocking=non_blocking)
            y = torch.as_tensor(y).to(self.device, torch.int64, non_blocking=non_blocking)
            if self.augment is not None:
                x = self.augment(x, self._schedule.augment_generator(b))
            yield x, y


def make_loader(
    dataset: Dataset | tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    augment: str | Augment | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> TensorLoader | DatasetLoader:
    """A :class:`TensorLoader` for in-memory data, else a :class:`DatasetLoader` (torch DataLoader).

    Both give the same batches in the same order for the same (seed, epoch) and support
    ``set_epoch``, ``len`` and ``iter_from``. ``num_workers`` only affects the DataLoader path.
    """
    if is_in_memory(dataset):
        return TensorLoader(dataset, batch_size, shuffle, seed, device, augment, drop_last, rank, world_size)
    if not isinstance(dataset, Dataset) and not hasattr(dataset, "__getitem__"):
        raise NetgrowTypeError(
            f"netgrow.data.make_loader: {type(dataset).__name__} is not a data set; pass a torch Dataset or (x, y)"
        )
    return DatasetLoader(dataset, batch_size, shuffle, seed, device, augment, drop_last, rank, world_size, num_workers)
