"""How commands talk to people and to machines: one-line errors, JSON summaries, progress bars."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from skyline.errors import ConfigError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def write_json(path: Path | str, payload: Any) -> Path:
    """Write a machine-readable summary (``--json PATH``), creating parent folders."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(_finite_or_none(payload), indent=2, sort_keys=False) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}; pass a writable path") from exc
    return target


class ProgressReporter(Protocol):
    def __call__(self, advance: int = 1) -> None: ...


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool = True) -> Iterator[ProgressReporter]:
    """A rich progress bar on a terminal; silent when not a TTY or when ``enabled`` is false (``--json``)."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda advance=1: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda advance=1: bar.advance(task, advance)
