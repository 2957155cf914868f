"""A small chain CNN for compression tests: `skyline.training`'s ``cnn-bn`` at a chosen width (fast to train)."""

from __future__ import annotations

from torch import nn


def small_cnn(in_channels: int = 1, side: int = 8, num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """conv-bn-relu ×2, max-pool, two linear layers: a plain chain, so structured pruning can shrink it."""
    pooled = side // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * pooled * pooled, 4 * width),
        nn.ReLU(),
        nn.Linear(4 * width, num_classes),
    )
