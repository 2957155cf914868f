"""Trace readers with validation: a bad row names file, line and field; ``skip_invalid`` counts instead.

- Philly as packaged by Pollux (``philly.csv``) with VC sizes from Helios' ``philly_vc.csv`` (8-GPU nodes).
- Alibaba openb pods and nodes (fractional GPUs, CPU, memory, GPU models).
- A generic CSV: ``submit_time_s,duration_s,num_gpus[,gpu_milli,cpu_milli,memory_mib,gpu_type,job_type,
  user,vc,priority]`` (see docs/scheduling.md).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from skyline.errors import DataError
from skyline.scheduling.packing import GPU, NodeSpec
from skyline.simulation.trace import Trace, TraceJob

PHILLY_NODE_GPUS = 8


class _RowError(Exception):
    def __init__(self, field: str, value: str, problem: str) -> None:
        super().__init__(problem)
        self.field, self.value, self.problem = field, value, problem


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise DataError(f"cannot read trace {path}: {exc.strerror}; pass an existing CSV file") from exc
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(
                f"{path}:1: header lacks column(s) {', '.join(missing)} (has {', '.join(header) or 'none'}); "
                f"the format needs {', '.join(required)}"
            )
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            yield reader.line_num, row


def _number(
    row: dict[str, str], name: str, *, minimum: float, integer: bool = False, default: str | None = None
) -> float:
    raw = (row.get(name) or "").strip()
    if not raw and default is not None:
        raw = default
    try:
        value = float(raw)
    except ValueError:
        raise _RowError(name, raw, "is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise _RowError(name, raw, f"must be finite and >= {minimum:g}")
    if integer and value != int(value):
        raise _RowError(name, raw, "must be a whole number")
    return value


def _collect(
    path: Path,
    rows: Iterator[tuple[int, dict[str, str]]],
    parse: Callable[[int, dict[str, str]], TraceJob],
    skip_invalid: bool,
) -> tuple[list[TraceJob], int, list[str]]:
    jobs: list[TraceJob] = []
    skipped = 0
    examples: list[str] = []
    for line, row in rows:
        try:
            jobs.append(parse(line, row))
        except _RowError as err:
            message = f"{path}:{line}: field {err.field!r} {err.problem} (got {err.value!r})"
            if not skip_invalid:
                raise DataError(f"{message}; fix the row or pass --skip-invalid to skip bad rows") from None
            skipped += 1
            if len(examples) < 5:
                examples.append(message)
    return jobs, skipped, examples


def read_philly_vcs(path: Path) -> dict[str, int]:
    """VC id → number of 8-GPU nodes, from Helios' ``philly_vc.csv`` (columns ``vc,node num``)."""
    sizes: dict[str, int] = {}
    for line, row in _rows(path, ("vc", "node num")):
        try:
            sizes[row["vc"].strip()] = int(_number(row, "node num", minimum=1, integer=True))
        except _RowError as err:
            raise DataError(f"{path}:{line}: field {err.field!r} {err.problem} (got {err.value!r})") from None
    return sizes


def read_philly(
    path: Path, *, vc_sizes: Path | None = None, vc: str | None = None, skip_invalid: bool = False
) -> Trace:
    """Pollux's ``philly.csv``: ``timestamp,duration,num_gpus,gpu_time,cluster``; submit = timestamp.

    With ``vc`` only that VC's jobs, on its nodes; else all jobs on the nodes of every VC listed.
    """

    def parse(line: int, row: dict[str, str]) -> TraceJob:
        stamp = (row.get("timestamp") or "").strip()
        try:  # fromisoformat is ~10x faster than strptime; the length check keeps the format strict
            if len(stamp) != 19:
                raise ValueError(stamp)
            submitted = datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise _RowError("timestamp", stamp, "is not YYYY-MM-DD HH:MM:SS") from None
        cluster = (row.get("cluster") or "").strip()
        if not cluster:
            raise _RowError("cluster", cluster, "is empty")
        return TraceJob(
            id=f"philly-{line}",
            submit_s=submitted,
            duration_s=_number(row, "duration", minimum=1),
            replicas=int(_number(row, "num_gpus", minimum=1, integer=True)),
            vc=cluster,
        )

    rows = _rows(path, ("timestamp", "duration", "num_gpus", "cluster"))
    jobs, skipped, examples = _collect(path, rows, parse, skip_invalid)
    if vc is not None:
        jobs = _of_vc(path, jobs, vc)
    nodes: tuple[NodeSpec, ...] = ()
    if vc_sizes is not None:
        sizes = read_philly_vcs(vc_sizes)
        if vc is not None and vc not in sizes:
            raise DataError(f"{vc_sizes}: VC {vc!r} has no size; known VCs: {', '.join(sizes)}")
        chosen = {vc: sizes[vc]} if vc is not None else sizes
        nodes = tuple(
            NodeSpec(id=f"{name}-{i}", gpus=PHILLY_NODE_GPUS)
            for name, count in chosen.items()
            for i in range(count)
        )
    return _rebased(
        Trace(
            name="philly" + (f"-{vc}" if vc else ""),
            jobs=tuple(jobs),
            nodes=nodes,
            skipped=skipped,
            skipped_examples=tuple(examples),
        )
    )


def _rebased(trace: Trace) -> Trace:
    if not trace.jobs:
        raise DataError(f"trace {trace.name} has no valid job")
    t0 = trace.jobs[0].submit_s
    for job in trace.jobs:  # our own fresh jobs: re-time in place (see TraceJob)
        job.submit_s -= t0
    return trace


def read_openb_nodes(path: Path) -> tuple[NodeSpec, ...]:
    """openb node list: ``sn,cpu_milli,memory_mib,gpu,model``."""
    nodes: list[NodeSpec] = []
    for line, row in _rows(path, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        try:
            nodes.append(
                NodeSpec(
                    id=row["sn"].strip(),
                    gpus=int(_number(row, "gpu", minimum=0, integer=True)),
                    gpu_type=(row.get("model") or "").strip() or None,
                    cpu_milli=int(_number(row, "cpu_milli", minimum=0, integer=True)),
                    memory_mib=int(_number(row, "memory_mib", minimum=0, integer=True)),
                )
            )
        except _RowError as err:
            raise DataError(f"{path}:{line}: field {err.field!r} {err.problem} (got {err.value!r})") from None
    return tuple(nodes)


def read_openb(path: Path, *, nodes: Path | None = None, skip_invalid: bool = False) -> Trace:
    """openb pods: GPU share, CPU, memory, allowed models; runs from scheduled (or creation) to deletion."""

    def parse(line: int, row: dict[str, str]) -> TraceJob:
        num_gpu = int(_number(row, "num_gpu", minimum=0, integer=True))
        milli = int(_number(row, "gpu_milli", minimum=0, integer=True, default="0"))
        if num_gpu == 1 and not 0 < milli <= GPU:
            raise _RowError("gpu_milli", str(milli), "must be in 1..1000 for a one-GPU pod")
        created = _number(row, "creation_time", minimum=0)
        start_field = "scheduled_time" if (row.get("scheduled_time") or "").strip() else "creation_time"
        started = _number(row, start_field, minimum=0)
        deleted = _number(row, "deletion_time", minimum=0)
        if deleted <= started:
            raise _RowError(
                "deletion_time", row["deletion_time"], f"must be after {start_field} ({started:g})"
            )
        return TraceJob(
            id=(row.get("name") or f"pod-{line}").strip(),
            submit_s=created,
            duration_s=deleted - started,
            gpu_milli=milli if num_gpu == 1 else num_gpu * GPU,
            cpu_milli=int(_number(row, "cpu_milli", minimum=0, integer=True)),
            memory_mib=int(_number(row, "memory_mib", minimum=0, integer=True)),
            gpu_type=(row.get("gpu_spec") or "").strip() or None,
            job_type=(row.get("qos") or "").strip(),
        )

    required = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time", "deletion_time")
    jobs, skipped, examples = _collect(path, _rows(path, required), parse, skip_invalid)
    node_specs = read_openb_nodes(nodes) if nodes is not None else ()
    return _rebased(
        Trace(
            name="openb",
            jobs=tuple(jobs),
            nodes=node_specs,
            skipped=skipped,
            skipped_examples=tuple(examples),
        )
    )


GENERIC_COLUMNS = ("submit_time_s", "duration_s", "num_gpus")


def _of_vc(path: Path, jobs: list[TraceJob], vc: str) -> list[TraceJob]:
    """The jobs of one virtual cluster; a `DataError` naming the VCs there are when it has none."""
    chosen = [j for j in jobs if j.vc == vc]
    if not chosen:
        known = sorted({j.vc for j in jobs if j.vc})
        listed = (
            ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") if known else "none (no vc column)"
        )
        raise DataError(f"{path}: no job of VC {vc!r}; VCs in the trace: {listed}")
    return chosen


def read_generic(path: Path, *, vc: str | None = None, skip_invalid: bool = False) -> Trace:
    """Generic CSV. ``num_gpus`` GPUs as a gang of one-GPU replicas; with ``num_gpus`` = 1 and
    ``gpu_milli`` < 1000, a fraction of one device; ``num_gpus`` = 0 is CPU-only. With ``vc``, only
    the rows of that ``vc`` column value."""

    def parse(line: int, row: dict[str, str]) -> TraceJob:
        num = int(_number(row, "num_gpus", minimum=0, integer=True))
        milli = int(_number(row, "gpu_milli", minimum=1, integer=True, default=str(GPU))) if num else 0
        if num == 1 and milli > GPU:
            raise _RowError("gpu_milli", str(milli), "must be <= 1000 (a share of one GPU)")
        cpu = int(_number(row, "cpu_milli", minimum=0, integer=True, default="0"))
        memory = int(_number(row, "memory_mib", minimum=0, integer=True, default="0"))
        if num == 0 and cpu == 0 and memory == 0:
            raise _RowError("num_gpus", "0", "is 0 and the row asks no CPU or memory either")
        return TraceJob(
            id=f"job-{line}",
            submit_s=_number(row, "submit_time_s", minimum=0),
            duration_s=_number(row, "duration_s", minimum=1e-9),
            gpu_milli=milli if num == 1 else (GPU if num else 0),
            replicas=max(num, 1),
            cpu_milli=cpu,
            memory_mib=memory,
            gpu_type=(row.get("gpu_type") or "").strip() or None,
            job_type=(row.get("job_type") or "").strip(),
            user=(row.get("user") or "").strip(),
            vc=(row.get("vc") or "").strip(),
            priority=int(_number(row, "priority", minimum=-1e9, integer=True, default="0")),
        )

    jobs, skipped, examples = _collect(path, _rows(path, GENERIC_COLUMNS), parse, skip_invalid)
    if not jobs:
        raise DataError(f"{path}: no valid job rows")
    if vc is not None:
        jobs = _of_vc(path, jobs, vc)
    name = path.stem + (f"-{vc}" if vc else "")
    return Trace(name=name, jobs=tuple(jobs), skipped=skipped, skipped_examples=tuple(examples))
