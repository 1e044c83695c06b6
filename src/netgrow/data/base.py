"""The in-memory data set every netgrow loader returns.

Images are kept as raw ``uint8`` tensors (N×C×H×W) to save memory; 1-D signals and other real-valued
data as ``float32`` (N×C×L or N×C×H×W). Indexing normalises on the fly:
``x = (raw / 255 - mean[c]) / std[c]`` for ``uint8`` data, ``x = (raw - mean[c]) / std[c]`` otherwise,
where ``mean``/``std`` are per-channel statistics of the data set's *train* split (the test split and
every class subset carry the train statistics, so a model sees identically scaled inputs in every
stage of cumulative training).

Example::

    >>> import torch
    >>> from netgrow.data.base import InMemoryDataset
    >>> ds = InMemoryDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
    ...                      classes=["a", "b"], name="toy")
    >>> x, y = ds[1]
    >>> tuple(x.shape), y, ds.num_classes
    ((1, 2, 2), 1, 2)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from netgrow.errors import DataError, NetgrowTypeError

log = logging.getLogger(__name__)

__all__ = ["InMemoryDataset", "channel_stats", "normalize"]


def channel_stats(data: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``data`` (N×C×...), in normalised-input units.

    ``uint8`` data is measured on the [0, 1] scale (``raw / 255``). The statistics are exact: for
    ``uint8`` they come from a 256-bin histogram per channel (no N×C×H×W float copy), for float
    data from float64 sums. A zero standard deviation (a constant channel) is reported as 1.0 so
    normalising never divides by zero.
    """
    if data.ndim < 2 or data.shape[0] == 0:
        raise DataError(f"netgrow.data: cannot compute channel statistics of an empty tensor {tuple(data.shape)}")
    channels = data.shape[1]
    means: list[float] = []
    stds: list[float] = []
    for c in range(channels):
        plane = data[:, c]
        if data.dtype == torch.uint8:
            hist = torch.bincount(plane.reshape(-1).to(torch.int64), minlength=256).to(torch.float64)
            values = torch.arange(256, dtype=torch.float64) / 255.0
            n = hist.sum()
            mean = (hist * values).sum() / n
            var = (hist * (values - mean) ** 2).sum() / n
        else:
            flat = plane.reshape(-1).to(torch.float64)
            mean = flat.mean()
            var = ((flat - mean) ** 2).mean()
        std = float(var.sqrt())
        means.append(float(mean))
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def normalize(
    raw: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Normalise a raw batch B×C×… (``uint8`` on the 0..255 scale, or float) with per-channel stats."""
    x = raw.to(dtype)
    if raw.dtype == torch.uint8:
        x = x / 255.0
    shape = (1, -1) + (1,) * (raw.ndim - 2)
    m = torch.tensor(mean, dtype=dtype, device=raw.device).view(shape)
    s = torch.tensor(std, dtype=dtype, device=raw.device).view(shape)
    return (x - m) / s


class InMemoryDataset(Dataset):
    """A labelled data set held in memory as one raw tensor plus ``int64`` targets.

    Attributes: ``data`` (raw tensor), ``targets`` (int64, N), ``classes`` (names), ``num_classes``,
    ``mean``/``std`` (per-channel tuples), ``name``, ``input_shape`` (C,H,W or C,L), ``class_order``
    (for each label, the label it had in the original data set; identity unless made by
    :func:`netgrow.data.nested_subsets`).

    ``dataset[i]`` returns ``(x, y)`` with ``x`` a normalised ``float32`` tensor and ``y`` an ``int``.
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor | Sequence[int],
        classes: Sequence[str],
        name: str,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_order: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(data, torch.Tensor):
            raise NetgrowTypeError(f"netgrow.data: {name}: data must be a torch.Tensor, got {type(data).__name__}")
        if data.dtype != torch.uint8 and not data.is_floating_point():
            raise NetgrowTypeError(
                f"netgrow.data: {name}: data must be uint8 images or floating point, got {data.dtype}"
            )
        if data.ndim < 3:
            raise DataError(
                f"netgrow.data: {name}: data must be N×C×H×W or N×C×L, got shape {tuple(data.shape)}; "
                "add a channel dimension (data.unsqueeze(1))"
            )
        targets = torch.as_tensor(targets).to(torch.int64).reshape(-1)
        if targets.shape[0] != data.shape[0]:
            raise DataError(
                f"netgrow.data: {name}: {data.shape[0]} samples but {targets.shape[0]} labels"
            )
        classes = [str(c) for c in classes]
        if len(classes) == 0:
            raise DataError(f"netgrow.data: {name}: a data set needs at least one class")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= len(classes)):
            raise DataError(
                f"netgrow.data: {name}: labels must lie in [0, {len(classes)}), found "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        self.data = data if data.dtype == torch.uint8 else data.to(torch.float32)
        self.targets = targets
        self.classes = classes
        self.name = name
        if mean is None or std is None:
            if data.shape[0] == 0:
                raise DataError(f"netgrow.data: {name}: empty data set and no mean/std given")
            mean, std = channel_stats(self.data)
        if len(mean) != data.shape[1] or len(std) != data.shape[1]:
            raise DataError(
                f"netgrow.data: {name}: mean/std need one value per channel ({data.shape[1]}), "
                f"got {len(mean)} and {len(std)}"
            )
        if any(s <= 0 for s in std):
            raise DataError(f"netgrow.data: {name}: std must be positive, got {tuple(float(v) for v in std)}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.class_order = list(range(len(classes))) if class_order is None else [int(c) for c in class_order]

    # -- basic protocol -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) for images, (C, L) for signals."""
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"netgrow.data: {self.name}: index {index} out of range for {n} samples")
        # normalise a batch of one so per-item and whole-tensor results are bit-identical
        x = self.normalize(self.data[i : i + 1])
        return x[0], int(self.targets[i])

    def __repr__(self) -> str:
        return (
            f"InMemoryDataset(name={self.name!r}, n={len(self)}, num_classes={self.num_classes}, "
            f"input_shape={self.input_shape}, dtype={self.data.dtype})"
        )

    # -- normalisation ----------------------------------------------------------------------------
    def normalize(self, raw: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Turn a raw batch (B×C×…, any device) of this data set into normalised ``dtype`` inputs."""
        return normalize(raw, self.mean, self.std, dtype)

    def raw_fill(self) -> tuple[float, ...]:
        """Per-channel normalised value of a raw zero pixel (black), used to pad crops."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))

    def tensors(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole data set as ``(normalised x, int64 y)`` on ``device`` (default CPU)."""
        raw = self.data.to(device) if device is not None else self.data
        return self.normalize(raw, dtype), self.targets.to(raw.device)

    # -- subsets ----------------------------------------------------------------------------------
    def select(
        self,
        indices: torch.Tensor,
        label_map: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
        name: str | None = None,
        class_order: Sequence[int] | None = None,
    ) -> "InMemoryDataset":
        """A new data set holding ``indices`` of this one (copied), labels mapped through ``label_map``.

        The normalisation statistics are inherited, not recomputed (see the module docstring).
        """
        indices = torch.as_tensor(indices, dtype=torch.int64)
        targets = self.targets[indices]
        if label_map is not None:
            targets = label_map[targets]
        return InMemoryDataset(
            self.data[indices],
            targets,
            classes=self.classes if classes is None else classes,
            name=self.name if name is None else name,
            mean=self.mean,
            std=self.std,
            class_order=self.class_order if class_order is None else class_order,
        )
