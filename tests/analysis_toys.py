"""Tiny, seeded, separable image data and small CNNs trained in a fraction of a second (analysis tests).

Class ``c`` of ``K`` lights up a 3×3 patch at its own position in an 8×8 grey image (values in
[0.2, 0.8] before the optional normalisation), so a small CNN learns it in a few dozen steps.
"""

from __future__ import annotations

import torch
from torch import nn

SIZE = 8
_POS = [(0, 0), (0, 5), (5, 0), (5, 5), (2, 2), (0, 2), (5, 2), (2, 0)]


def blob_images(n: int, k: int, seed: int = 0, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``n`` images 1×8×8 in [0.2, 0.8] (raw scale), labels balanced over ``k`` classes."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    y = y[torch.randperm(n, generator=gen)]
    x = torch.full((n, 1, SIZE, SIZE), 0.35)
    for c in range(k):
        r, q = _POS[c]
        x[y == c, :, r : r + 3, q : q + 3] = 0.65
    x = x + noise * torch.randn(x.shape, generator=gen)
    return x.clamp(0.2, 0.8), y


class TinyCNN(nn.Module):
    """conv-BN-ReLU, conv-ReLU, pool, linear."""

    def __init__(self, k: int, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(width * (SIZE // 2) ** 2, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 60, lr: float = 0.02,
          seed: int = 0) -> nn.Module:
    """Full-batch Adam for ``steps`` steps; returns the model in eval mode."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()

