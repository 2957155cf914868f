"""The trace-reader contract, run over every format in `READERS`.

Every reader gives jobs in submit order with positive durations and whole gangs, caps at ``jobs``, refuses
each option it does not honour (naming the flag), and — for file formats — names file and line of a bad row,
or skips and counts it with ``skip_invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skyline.errors import ConfigError, DataError
from skyline.simulation.sources import OPTION_FLAGS, READERS, TraceSource, load_trace

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Sample:
    """A valid file of ``rows`` jobs, the same with one bad row added, and companion files by option."""

    good: str
    bad_row: str
    rows: int
    companions: dict[str, tuple[str, str]]  # option -> (file name, content)


SAMPLES = {
    "philly": Sample(
        good="timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:01:55,66.0,1,66.0,vcA\n2017-10-09 07:00:55,100.0,8,800.0,vcB\n"
        "2017-10-09 07:02:00,10.0,2,20.0,vcA\n",
        bad_row="2017-10-09 07:03:00,-5,1,5,vcA\n",
        rows=3,
        companions={"vc_sizes": ("vcs.csv", "vc,node num\nvcA,2\nvcB,1\n")},
    ),
    "openb": Sample(
        good="name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,scheduled_time\n"
        "p0,12000,16384,1,460,,LS,10,110,20\np1,6000,1024,2,1000,V100M16,BE,5,50,\np2,2000,512,0,0,,BE,7,9,\n",
        bad_row="p3,6000,1024,1,460,,LS,5,5,5\n",
        rows=3,
        companions={"nodes": ("nodes.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n")},
    ),
    "generic": Sample(
        good="submit_time_s,duration_s,num_gpus,cpu_milli,vc\n30,10,1,0,a\n0,5,2,0,b\n12,1,0,500,a\n",
        bad_row="40,x,1,0,a\n",
        rows=3,
        companions={},
    ),
}
# A value for each option a test may set, so that "not honoured" is checked for every flag.
OPTION_VALUES: dict[str, Any] = {
    "vc": "a",
    "vc_sizes": Path("v.csv"),
    "nodes": Path("n.csv"),
    "skip_invalid": True,
}


def _source(fmt: str, tmp_path: Path, *, extra_row: str = "", **options: Any) -> TraceSource:
    if not READERS[fmt].needs_path:
        return TraceSource(format=fmt, **options)
    sample = SAMPLES[fmt]
    path = tmp_path / f"{fmt}.csv"
    path.write_text(sample.good + extra_row)
    for option, (name, content) in sample.companions.items():
        if option in READERS[fmt].takes and option not in options:
            (tmp_path / name).write_text(content)
            options[option] = tmp_path / name
    return TraceSource(format=fmt, path=path, **options)


def test_every_file_format_has_a_sample() -> None:
    assert {f for f, r in READERS.items() if r.needs_path} == set(SAMPLES)


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_jobs_come_in_submit_order_with_positive_durations_and_whole_gangs(fmt: str, tmp_path: Path) -> None:
    trace = load_trace(_source(fmt, tmp_path))
    submits = [j.submit_s for j in trace.jobs]
    assert submits == sorted(submits) and submits[0] >= 0
    assert all(j.duration_s > 0 and j.replicas >= 1 for j in trace.jobs)
    assert len({j.id for j in trace.jobs}) == len(trace.jobs)
    if fmt in SAMPLES:
        assert len(trace.jobs) == SAMPLES[fmt].rows


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_jobs_caps_the_trace(fmt: str, tmp_path: Path) -> None:
    trace = load_trace(_source(fmt, tmp_path, jobs=2))
    assert len(trace.jobs) == 2


@pytest.mark.parametrize(
    ("fmt", "option"),
    [(f, o) for f in sorted(READERS) for o in OPTION_FLAGS if o not in READERS[f].takes],
)
def test_an_option_the_format_does_not_honour_is_refused_by_its_flag(
    fmt: str, option: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=f"{OPTION_FLAGS[option]} is not used by --format {fmt}"):
        _source(fmt, tmp_path, **{option: OPTION_VALUES[option]})


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_a_bad_row_names_file_and_line_or_is_skipped_and_counted(fmt: str, tmp_path: Path) -> None:
    bad_line = SAMPLES[fmt].rows + 2  # header, the good rows, then the bad one
    with pytest.raises(DataError, match=rf"{fmt}\.csv:{bad_line}: field"):
        load_trace(_source(fmt, tmp_path, extra_row=SAMPLES[fmt].bad_row))
    trace = load_trace(_source(fmt, tmp_path, extra_row=SAMPLES[fmt].bad_row, skip_invalid=True))
    assert trace.skipped == 1 and len(trace.jobs) == SAMPLES[fmt].rows


@pytest.mark.parametrize("fmt", sorted(f for f in SAMPLES if "vc" in READERS[f].takes))
def test_vc_keeps_only_that_virtual_clusters_jobs(fmt: str, tmp_path: Path) -> None:
    vc = {"philly": "vcA", "generic": "a"}[fmt]
    trace = load_trace(_source(fmt, tmp_path, vc=vc))
    assert trace.jobs and all(j.vc == vc for j in trace.jobs)
    with pytest.raises(DataError, match="no job of VC 'nope'"):
        load_trace(_source(fmt, tmp_path, vc="nope"))
