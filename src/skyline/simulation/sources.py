"""Trace formats as a registry (`READERS`) and `TraceSource`: where a trace comes from, validated whole.

Each `TraceReader` says which options it honours; `TraceSource` refuses any other one with the reason,
so a flag a format does not use (``--vc`` on openb, ``--nodes`` on Philly) is an error, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from skyline.errors import ConfigError
from skyline.simulation.readers import read_generic, read_openb, read_philly
from skyline.simulation.synthetic import resample, synthetic_trace
from skyline.simulation.trace import Trace

# Options a reader may honour, with the CLI flag that sets each (for the error messages).
OPTION_FLAGS = {"vc": "--vc", "vc_sizes": "--vc-sizes", "nodes": "--nodes", "skip_invalid": "--skip-invalid"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceReader:
    """One trace format: how to read it and which `TraceSource` options it honours.

    ``companions`` names files found beside the trace or in the shared data when not given (option →
    path under ``traces/``); ``why_not`` says why it does not take the options it does not (for the
    error); ``default_cluster`` is the cluster it runs on when none is given.
    """

    read: Callable[[TraceSource], Trace]
    needs_path: bool = True
    takes: frozenset[str] = frozenset()
    companions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    why_not: str = ""
    default_cluster: str | None = None  # `parse_cluster` spec when the command names none


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceSource:
    """Where a trace comes from. ``path`` may be None only for formats that need none (synthetic)."""

    format: str
    path: Path | None = None
    vc: str | None = None
    vc_sizes: Path | None = None
    nodes: Path | None = None
    skip_invalid: bool = False
    jobs: int | None = None  # synthetic / resampled size, or a cap on the first N jobs of a file
    jobs_per_hour: float | None = None  # load sweep: resample at this rate
    seed: int = 0

    def __post_init__(self) -> None:
        reader = READERS.get(self.format)
        if reader is None:
            raise ConfigError(f"unknown trace format {self.format!r}; choose one of {', '.join(READERS)}")
        if reader.needs_path and self.path is None:
            raise ConfigError(f"--format {self.format} needs --trace PATH")
        if not reader.needs_path and self.path is not None:
            raise ConfigError(f"--format {self.format} generates its trace: drop --trace")
        for option, flag in OPTION_FLAGS.items():
            if getattr(self, option) not in (None, False) and option not in reader.takes:
                raise ConfigError(f"{flag} is not used by --format {self.format} ({reader.why_not}); drop it")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")

    @property
    def reader(self) -> TraceReader:
        return READERS[self.format]


def load_trace(source: TraceSource) -> Trace:
    """Read (or generate) the trace; resample it at ``jobs_per_hour`` when asked, else cap it at ``jobs``."""
    trace = source.reader.read(source)
    if source.jobs_per_hour is not None and source.reader.needs_path:
        return resample(
            trace, jobs=source.jobs or len(trace.jobs), jobs_per_hour=source.jobs_per_hour, seed=source.seed
        )
    if source.jobs is not None and source.jobs < len(trace.jobs):
        return trace.slice(0, source.jobs)
    return trace


def _philly(source: TraceSource) -> Trace:
    assert source.path is not None
    return read_philly(source.path, vc_sizes=source.vc_sizes, vc=source.vc, skip_invalid=source.skip_invalid)


def _openb(source: TraceSource) -> Trace:
    assert source.path is not None
    return read_openb(source.path, nodes=source.nodes, skip_invalid=source.skip_invalid)


def _generic(source: TraceSource) -> Trace:
    assert source.path is not None
    return read_generic(source.path, vc=source.vc, skip_invalid=source.skip_invalid)


def _synthetic(source: TraceSource) -> Trace:
    return synthetic_trace(
        jobs=source.jobs or 1000, jobs_per_hour=source.jobs_per_hour or 30.0, seed=source.seed
    )


READERS: dict[str, TraceReader] = {
    "philly": TraceReader(
        read=_philly,
        takes=frozenset({"vc", "vc_sizes", "skip_invalid"}),
        companions={"vc_sizes": ("helios", "philly_vc.csv")},
        why_not="Philly's cluster comes from --vc-sizes",
    ),
    "openb": TraceReader(
        read=_openb,
        takes=frozenset({"nodes", "skip_invalid"}),
        companions={"nodes": ("alibaba-gpu-v2023", "openb_node_list_gpu_node.csv")},
        why_not="openb pods carry no virtual cluster; its cluster comes from --nodes",
    ),
    "generic": TraceReader(
        read=_generic,
        takes=frozenset({"vc", "skip_invalid"}),
        why_not="a generic CSV names no cluster: pass --cluster",
    ),
    "synthetic": TraceReader(
        read=_synthetic,
        needs_path=False,
        why_not="a synthetic trace has one virtual cluster and no file to read",
        default_cluster="8x8",
    ),
}
