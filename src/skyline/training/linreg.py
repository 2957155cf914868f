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
    """Run ``config.steps`` updates ``θ ← θ − lr·∇MSE(θ)`` in float64: the project's one training loop
    (`skyline.training.fit`) with plain SGD on the whole batch, which is plain gradient descent."""
    import torch  # heavy: imported on use so that `skyline --help` stays fast

    from skyline.training.fit import FitConfig, fit, task_loss

    x = torch.tensor(config.x, dtype=torch.float64)[:, None]
    y = torch.tensor(config.y, dtype=torch.float64)
    line = torch.nn.Linear(1, 1, dtype=torch.float64)
    torch.nn.init.zeros_(line.weight)
    torch.nn.init.zeros_(line.bias)
    steps = FitConfig(epochs=config.steps, lr=config.lr, batch_size=len(y), optimizer="sgd", momentum=0.0)
    fit(line, x, y, steps, loss=task_loss("regression"))
    with torch.no_grad():
        predictions = line(x).squeeze(-1)
        final_loss = float(torch.mean((predictions - y) ** 2))
    return LinRegResult(
        w=line.weight.item(),
        b=line.bias.item(),
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
