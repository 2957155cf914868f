from __future__ import annotations

import numpy as np
import pytest

from skyline.errors import ConfigError
from skyline.training.linreg import LinRegConfig, fit_linreg

pytestmark = pytest.mark.unit


def numpy_gradient_descent(x: list[float], y: list[float], lr: float, steps: int) -> tuple[float, float]:
    """The same updates written out by hand: dL/dw = 2·mean((wx+b−y)·x), dL/db = 2·mean(wx+b−y)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = b = 0.0
    for _ in range(steps):
        residual = w * xs + b - ys
        w, b = w - lr * 2 * float(np.mean(residual * xs)), b - lr * 2 * float(np.mean(residual))
    return w, b


@pytest.mark.parametrize(
    ("x", "y", "lr", "steps"),
    [
        ([1, 2, 3], [2, 4, 6], 0.1, 100),
        ([1, 2, 3], [2, 4, 6], 0.05, 7),
        ([0, 1, 4, 5], [1, 3, 2, 8], 0.02, 250),
    ],
)
def test_matches_hand_written_numpy_updates(x: list[float], y: list[float], lr: float, steps: int) -> None:
    result = fit_linreg(LinRegConfig(x=tuple(x), y=tuple(y), lr=lr, steps=steps))
    w, b = numpy_gradient_descent(x, y, lr, steps)
    assert result.w == pytest.approx(w, abs=1e-6)
    assert result.b == pytest.approx(b, abs=1e-6)
    predictions = np.asarray(x) * w + b
    assert result.predictions == pytest.approx(predictions.tolist(), abs=1e-6)
    assert result.loss == pytest.approx(float(np.mean((predictions - np.asarray(y)) ** 2)), abs=1e-9)


def test_the_seed_example_gives_what_the_computation_gives() -> None:
    """The seed document claimed w = 1.99, b = 1.01; these 100 steps give w ≈ 1.9715, b ≈ 0.0647."""
    result = fit_linreg(LinRegConfig())
    assert result.w == pytest.approx(1.971546, abs=1e-6)
    assert result.b == pytest.approx(0.064683, abs=1e-6)
    assert result.loss < 1e-3
    assert abs(result.b - 1.01) > 0.9  # b near 1 cannot fit y = 2x


def test_a_too_large_learning_rate_diverges_visibly() -> None:
    assert fit_linreg(LinRegConfig(lr=5.0, steps=200)).diverged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": (1.0,), "y": (1.0, 2.0)}, "same length"),
        ({"lr": 0.0}, "learning rate"),
        ({"steps": -1}, "steps"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LinRegConfig(**kwargs)  # type: ignore[arg-type]
