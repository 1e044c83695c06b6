"""Batch augmentation on tensors, on the device: random crop with padding and horizontal flip.

An augmentation is a callable ``(x, generator) -> x`` on a normalised batch B×C×H×W. Random numbers
come from the CPU ``generator`` the loader seeds from (seed, epoch, batch index), so a resumed run
draws exactly the same crops and flips; only the B offsets/flags are moved to the device.

Padding is "zero padding" in *raw pixel* space (black, as torchvision's ``RandomCrop(padding=p)``
before ``Normalize``): the pad value of channel c is ``-mean[c]/std[c]``.

Example::

    >>> import torch
    >>> from netgrow.data.transforms import CropFlip
    >>> aug = CropFlip(padding=2)
    >>> aug(torch.randn(8, 1, 28, 28), torch.Generator().manual_seed(0)).shape
    torch.Size([8, 1, 28, 28])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from netgrow.errors import NetgrowTypeError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["CropFlip", "default_padding", "resolve_augment", "mix_seed", "AUGMENTATIONS"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: Names accepted for ``augment=`` by the loaders.
AUGMENTATIONS = ("crop_flip", "crop", "flip")

_MASK63 = (1 << 63) - 1


def mix_seed(*values: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64 steps), so nearby inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        h = (h + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & _MASK63


def default_padding(size: int) -> int:
    """Crop padding for an image side: 4 for ≥32 px (CIFAR), 2 for ≥16 px (28×28), else 1."""
    return 4 if size >= 32 else 2 if size >= 16 else 1


class CropFlip:
    """Random crop of a ``padding``-padded batch and/or random horizontal flip, vectorised.

    Each image gets its own offsets (oy, ox) in [0, 2·padding] and its own flip (probability 1/2).
    """

    def __init__(
        self, padding: int = 4, crop: bool = True, flip: bool = True, fill: float | Sequence[float] = 0.0
    ) -> None:
        if int(padding) < 0:
            raise NetgrowValueError(f"netgrow.data.CropFlip: padding={padding}; use an int >= 0")
        self.padding = int(padding) if crop else 0
        self.crop = crop
        self.flip = flip
        self.fill = fill

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, crop={self.crop}, flip={self.flip})"

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The random (oy, ox, flip) of one batch, on CPU; exposed for tests."""
        span = 2 * self.padding + 1
        oy = torch.randint(0, span, (batch,), generator=generator)
        ox = torch.randint(0, span, (batch,), generator=generator)
        flip = torch.rand(batch, generator=generator) < 0.5 if self.flip else torch.zeros(batch, dtype=torch.bool)
        return oy, ox, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4:
            raise NetgrowValueError(
                f"netgrow.data.CropFlip: expects image batches B×C×H×W, got shape {tuple(x.shape)}; "
                "use augment=None for 1-D or flat data"
            )
        b, c, h, w = x.shape
        p = self.padding
        oy, ox, flip = (t.to(x.device) for t in self.draw(b, generator))
        if p > 0:
            fill = torch.as_tensor(self.fill, dtype=x.dtype, device=x.device).reshape(-1)
            if fill.numel() not in (1, c):
                raise NetgrowValueError(f"netgrow.data.CropFlip: fill has {fill.numel()} values for {c} channels")
            padded = fill.view(1, -1, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p : p + h, p : p + w] = x
        else:
            padded = x
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = oy[:, None] + ar_h  # B×H
        # flipping after cropping reads the crop window right to left
        cols = ox[:, None] + torch.where(flip[:, None], (w - 1) - ar_w, ar_w)  # B×W
        # two gathers (rows, then columns) are ~3x faster than one 4-D advanced index on CPU
        out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * p))
        return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def resolve_augment(augment: str | Augment | None, input_shape: Sequence[int], fill: Any = 0.0) -> Augment | None:
    """``None``, a name in :data:`AUGMENTATIONS`, or a callable ``(x, generator) -> x``."""
    if augment is None or callable(augment):
        return augment
    if not isinstance(augment, str):
        raise NetgrowTypeError(
            f"netgrow.data: augment={augment!r}; use None, one of {AUGMENTATIONS} or a callable (x, generator) -> x"
        )
    if augment not in AUGMENTATIONS:
        raise NetgrowValueError(f"netgrow.data: augment={augment!r}; use None or one of {AUGMENTATIONS}")
    if len(input_shape) != 3:
        raise NetgrowValueError(
            f"netgrow.data: augment={augment!r} needs images (C, H, W), the data are {tuple(input_shape)}; "
            "use augment=None"
        )
    pad = default_padding(min(int(input_shape[1]), int(input_shape[2])))
    return CropFlip(padding=pad, crop=augment != "flip", flip=augment != "crop", fill=fill)
