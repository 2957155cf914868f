"""The seed's worked example: fit ``y = w·x + b`` by plain gradient descent on the mean squared error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class LinRegConfig:
    """Full-batch gradient descent from ``w = b = 0`` with a fixed learning rate."""

    x: tuple[float, ...] = (1.0, 2.0, 3.0)
    y: tuple[float, ...] = (2.0, 4.0, 6.0)
    lr: float = 0.1
    steps: int = 100

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ConfigError(f"x and y must have the same length, got {len(self.x)} and {len(self.y)}")
        if len(self.x) < 1:
            raise ConfigError("need at least one (x, y) point")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}")
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinRegResult:
    w: float
    b: float
    loss: float  # mean squared error at the final (w, b)
    predictions: tuple[float, ...]
    diverged: bool  # the loss is not finite: the learning rate is too large for this data


def fit_linreg(config: LinRegConfig) -> LinRegResult:
    """Run ``config.steps`` updates ``θ ← θ − lr·∇MSE(θ)`` with PyTorch autograd, in float64."""
    import torch  # heavy: imported on use so that `skyline --help` stays fast

    x = torch.tensor(config.x, dtype=torch.float64)
    y = torch.tensor(config.y, dtype=torch.float64)
    w = torch.zeros((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([w, b], lr=config.lr)  # plain SGD on the full batch is plain GD
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = torch.mean((w * x + b - y) ** 2)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    with torch.no_grad():
        predictions = w * x + b
        final_loss = float(torch.mean((predictions - y) ** 2))
    return LinRegResult(
        w=w.item(),
        b=b.item(),
        loss=final_loss,
        predictions=tuple(float(p) for p in predictions),
        diverged=not math.isfinite(final_loss),
    )


def plot_linreg(x: Sequence[float], y: Sequence[float], result: LinRegResult, path: str) -> None:
    """Write a PNG of the points and the fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(x, y, label="data", zorder=3)
    lo, hi = min(x), max(x)
    pad = (hi - lo) * 0.1 or 1.0
    xs = [lo - pad, hi + pad]
    ax.plot(
        xs, [result.w * v + result.b for v in xs], color="C1", label=f"y = {result.w:.4f}·x + {result.b:.4f}"
    )
    ax.set(xlabel="x", ylabel="y", title=f"Gradient descent fit (MSE {result.loss:.3g})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
