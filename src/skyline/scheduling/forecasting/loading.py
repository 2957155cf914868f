"""Reading a demand series from CSV: a value column, or event timestamps counted per interval.

Gaps and zeros: with ``--count`` an interval without events is a true zero (no requests came). With a
value column, an interval without any sample is a gap (the recorder was down): it is filled by linear
interpolation between its neighbours and counted in `LoadedSeries.gap_steps`, never treated as zero.
pandas is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyline.errors import ConfigError, DataError
from skyline.scheduling.forecasting.series import Series

REDUCERS = ("max", "mean", "sum", "last")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedSeries:
    """A series read from a file, and how many of its steps were gaps filled by interpolation."""

    series: Series
    gap_steps: int


def parse_step(agg: str) -> float:
    """``"10min"``, ``"1h"``, ``"60s"`` → seconds (> 0)."""
    import pandas as pd

    try:
        seconds = float(pd.to_timedelta(agg).total_seconds())
    except (ValueError, TypeError):
        raise ConfigError(f"--agg {agg!r} is not a duration; use e.g. 1min, 10min or 1h") from None
    if seconds <= 0:
        raise ConfigError(f"--agg must be a positive duration, got {agg!r}")
    return seconds


def _read_columns(path: Path, columns: list[str]) -> Any:
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"series file {path} does not exist; pass a CSV path")
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"{path}: no column {', '.join(missing)}; the columns are {', '.join(header)}")
    return pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False)


def _parse_times(frame: Any, path: Path, time_col: str, *, allow_duplicates: bool) -> Any:
    import pandas as pd

    raw = frame[time_col]
    times = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}, line {row + 2}, column {time_col}: {raw.iloc[row]!r} is not a timestamp")
    if len(times) == 0:
        raise DataError(f"{path}: no rows")
    deltas = times.diff().dt.total_seconds().to_numpy()[1:]
    back = np.flatnonzero(deltas < 0)
    if back.size:
        raise DataError(
            f"{path}, line {int(back[0]) + 3}: timestamps are not sorted ({times.iloc[back[0] + 1]} after "
            f"{times.iloc[back[0]]}); sort the file by {time_col}"
        )
    same = np.flatnonzero(deltas == 0)
    if same.size and not allow_duplicates:
        raise DataError(
            f"{path}, line {int(same[0]) + 3}: duplicate timestamp {times.iloc[same[0] + 1]}; "
            "keep one sample per time (or use --count for event logs)"
        )
    return times


def load_series(
    path: Path | str,
    *,
    time_col: str,
    value_col: str | None = None,
    count: bool = False,
    agg: str = "10min",
    reduce: str = "max",
) -> LoadedSeries:
    """Read ``path`` into a `Series` with one value per ``agg`` interval.

    Exactly one of ``value_col`` (samples reduced per interval with ``reduce``) and ``count`` (one event
    per row, counted per interval) must be given.
    """
    import pandas as pd

    if (value_col is None) == (not count):
        raise ConfigError("give exactly one of --value-col COLUMN and --count")
    if reduce not in REDUCERS:
        raise ConfigError(f"--reduce {reduce!r} is unknown; use one of {', '.join(REDUCERS)}")
    path = Path(path)
    step_s = parse_step(agg)
    frame = _read_columns(path, [time_col] if value_col is None else [time_col, value_col])
    times = _parse_times(frame, path, time_col, allow_duplicates=count)
    if value_col is None:
        values = pd.Series(1.0, index=pd.DatetimeIndex(times))
        binned = values.resample(pd.Timedelta(seconds=step_s)).sum()
        gap_steps = 0
    else:
        text = frame[value_col].str.strip()
        numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy() & (text != "").to_numpy())
        if bad.size:
            row = int(bad[0])
            raise DataError(f"{path}, line {row + 2}, column {value_col}: {text.iloc[row]!r} is not a number")
        values = pd.Series(numbers.to_numpy(dtype=float), index=pd.DatetimeIndex(times)).dropna()
        if values.empty:
            raise DataError(f"{path}: column {value_col} has no values")
        binned = getattr(values.resample(pd.Timedelta(seconds=step_s)), reduce)()
        gap_steps = int(binned.isna().sum())
        binned = binned.interpolate(method="linear", limit_direction="both")
    start_s = float(binned.index[0].timestamp())
    name = f"{path.stem}:{value_col or 'count'}"
    series = Series(name=name, start_s=start_s, step_s=step_s, values=binned.to_numpy(dtype=np.float64))
    return LoadedSeries(series=series, gap_steps=gap_steps)
