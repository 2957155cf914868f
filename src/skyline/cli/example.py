"""`skyline example`: small worked examples that check the installation end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from skyline.cli.output import console, write_json
from skyline.errors import ConfigError

example_app = typer.Typer(help="Small worked examples.", no_args_is_help=True)


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated numbers like 1,2,3, got {text!r}") from None


@example_app.command("linreg")
def linreg(
    x: str = typer.Option("1,2,3", help="Inputs, comma-separated."),
    y: str = typer.Option("2,4,6", help="Targets, comma-separated."),
    lr: float = typer.Option(0.1, help="Learning rate."),
    steps: int = typer.Option(100, help="Gradient-descent steps."),
    plot: Path | None = typer.Option(None, help="Write a PNG of the points and the fitted line here."),
    json_path: Path | None = typer.Option(None, "--json", help="Write {w, b, loss, predictions} here."),
) -> None:
    """Fit y = w·x + b by plain gradient descent on the mean squared error (PyTorch, from w = b = 0)."""
    from skyline.training.linreg import LinRegConfig, fit_linreg, plot_linreg

    config = LinRegConfig(x=_floats(x, "x"), y=_floats(y, "y"), lr=lr, steps=steps)
    result = fit_linreg(config)
    if result.diverged:
        raise ConfigError(f"gradient descent diverged with --lr {lr}; try a smaller learning rate")
    if json_path is not None:
        write_json(
            json_path,
            {"w": result.w, "b": result.b, "loss": result.loss, "predictions": list(result.predictions)},
        )
    if plot is not None:
        plot_linreg(config.x, config.y, result, str(plot))
    console.print(f"w = {result.w:.6f}")
    console.print(f"b = {result.b:.6f}")
    console.print(f"loss = {result.loss:.6g}  (mean squared error after {steps} steps, lr {lr})")
    console.print("predictions = " + ", ".join(f"{p:.6f}" for p in result.predictions))
