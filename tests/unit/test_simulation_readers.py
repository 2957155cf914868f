"""Trace readers: good files load, bad rows name file, line and field, --skip-invalid counts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.errors import ConfigError, DataError
from skyline.simulation.compare import sweep_of
from skyline.simulation.readers import read_generic, read_openb, read_philly
from skyline.simulation.sources import READERS, TraceSource, load_trace
from skyline.simulation.synthetic import offered_load, resample, synthetic_trace
from skyline.simulation.trace import parse_cluster

pytestmark = pytest.mark.unit

PHILLY = """timestamp,duration,num_gpus,gpu_time,cluster
2017-10-09 07:01:55,66.0,1,66.0,vcA
2017-10-09 07:00:55,100.0,8,800.0,vcB
2017-10-09 07:02:00,10.0,16,160.0,vcA
"""
VCS = "vc,node num\nvcA,2\nvcB,1\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_philly_reads_jobs_rebased_to_the_first_submit_with_vc_nodes(tmp_path: Path) -> None:
    trace = read_philly(_write(tmp_path, "p.csv", PHILLY), vc_sizes=_write(tmp_path, "v.csv", VCS))
    assert [j.submit_s for j in trace.jobs] == [0, 60, 65]
    assert [j.replicas for j in trace.jobs] == [8, 1, 16]
    assert len(trace.nodes) == 3 and all(n.gpus == 8 for n in trace.nodes)


def test_philly_one_vc(tmp_path: Path) -> None:
    trace = read_philly(_write(tmp_path, "p.csv", PHILLY), vc_sizes=_write(tmp_path, "v.csv", VCS), vc="vcA")
    assert len(trace.jobs) == 2 and len(trace.nodes) == 2


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("2017-13-09 07:01:55,66.0,1,66.0,vcA", "timestamp"),
        ("2017-10-09 07:01:55,-3,1,66.0,vcA", "duration"),
        ("2017-10-09 07:01:55,66.0,1.5,66.0,vcA", "num_gpus"),
        ("2017-10-09 07:01:55,66.0,one,66.0,vcA", "num_gpus"),
        ("2017-10-09 07:01:55,66.0,1,66.0,", "cluster"),
    ],
)
def test_philly_bad_row_names_file_line_and_field(tmp_path: Path, row: str, field: str) -> None:
    path = _write(tmp_path, "p.csv", PHILLY + row + "\n")
    with pytest.raises(DataError, match=rf"p\.csv:5: field '{field}'"):
        read_philly(path)
    skipped = read_philly(path, skip_invalid=True)
    assert skipped.skipped == 1 and len(skipped.jobs) == 3


def test_missing_header_column_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lacks column"):
        read_generic(_write(tmp_path, "g.csv", "submit_time_s,num_gpus\n0,1\n"))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read trace"):
        read_generic(tmp_path / "absent.csv")


def test_generic_csv_optional_columns(tmp_path: Path) -> None:
    text = (
        "submit_time_s,duration_s,num_gpus,gpu_milli,cpu_milli,memory_mib,gpu_type,job_type,user,vc,priority\n"
        "0,10,1,500,1000,2048,V100,bert,ana,vc1,2\n"
        "3,20,4,,,,,,,,\n"
        "4,5,0,,2000,,,,,,\n"
    )
    trace = read_generic(_write(tmp_path, "g.csv", text))
    frac, gang, cpu = trace.jobs
    assert (frac.gpu_milli, frac.replicas, frac.gpu_type, frac.priority) == (500, 1, "V100", 2)
    assert (gang.gpu_milli, gang.replicas) == (1000, 4)
    assert (cpu.gpu_milli, cpu.cpu_milli) == (0, 2000)


def test_generic_bad_fraction(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"g\.csv:2: field 'gpu_milli'"):
        read_generic(_write(tmp_path, "g.csv", "submit_time_s,duration_s,num_gpus,gpu_milli\n0,1,1,1500\n"))


def test_openb_pods_and_nodes(tmp_path: Path) -> None:
    pods = (
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
        "p0,12000,16384,1,460,,LS,Running,10,110,20\n"
        "p1,6000,1024,2,1000,V100M16|V100M32,BE,Running,5,50,\n"
        "p2,6000,1024,1,460,,LS,Running,5,5,5\n"
    )
    nodes = "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n"
    with pytest.raises(DataError, match=r"pods\.csv:4: field 'deletion_time'"):
        read_openb(_write(tmp_path, "pods.csv", pods))
    trace = read_openb(
        _write(tmp_path, "pods.csv", pods), nodes=_write(tmp_path, "n.csv", nodes), skip_invalid=True
    )
    by_id = {j.id: j for j in trace.jobs}
    assert (by_id["p0"].gpu_milli, by_id["p0"].duration_s, by_id["p0"].submit_s) == (460, 90, 5)
    assert (by_id["p1"].gpu_milli, by_id["p1"].gpu_type) == (2000, "V100M16|V100M32")
    assert trace.nodes[0].gpu_type == "P100" and trace.skipped == 1


def test_synthetic_follows_the_published_mix() -> None:
    trace = synthetic_trace(jobs=4000, jobs_per_hour=100, seed=1)
    ones = sum(1 for j in trace.jobs if j.replicas == 1) / 4000
    long_jobs = sum(1 for j in trace.jobs if j.duration_s >= 1000 * 60) / 4000
    assert 0.67 < ones < 0.73 and 0.17 < long_jobs < 0.23
    assert all(10**1.5 * 60 <= j.duration_s <= 10**4 * 60 for j in trace.jobs)
    span_h = trace.jobs[-1].submit_s / 3600
    assert 36 < span_h < 44  # 4000 jobs at 100/h


def test_resample_is_seeded_and_keeps_the_jobs_shape() -> None:
    base = synthetic_trace(jobs=50, jobs_per_hour=10, seed=0)
    a = resample(base, jobs=30, jobs_per_hour=60, seed=4)
    b = resample(base, jobs=30, jobs_per_hour=60, seed=4)
    assert a == b and len(a.jobs) == 30
    assert {(j.duration_s, j.replicas) for j in a.jobs} <= {(j.duration_s, j.replicas) for j in base.jobs}
    assert offered_load(a, 64) > 0


@pytest.mark.parametrize("spec", ["", "8", "0x8", "8x", "axb", "2x8:"])
def test_bad_cluster_spec(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_cluster(spec)


def test_cluster_spec_types() -> None:
    nodes = parse_cluster("2x8:v100,1x4:k80")
    assert [(n.gpus, n.gpu_type) for n in nodes] == [(8, "v100"), (8, "v100"), (4, "k80")]


GENERIC_VCS = "submit_time_s,duration_s,num_gpus,vc\n0,10,1,a\n1,10,2,b\n2,10,1,a\n"


def test_generic_honours_vc_and_names_the_vcs_there_are(tmp_path: Path) -> None:
    path = _write(tmp_path, "g.csv", GENERIC_VCS)
    trace = load_trace(TraceSource(format="generic", path=path, vc="a"))
    assert [j.replicas for j in trace.jobs] == [1, 1] and trace.name == "g-a"
    with pytest.raises(DataError, match="no job of VC 'c'; VCs in the trace: a, b"):
        load_trace(TraceSource(format="generic", path=path, vc="c"))


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"format": "openb", "vc": "x"}, "--vc is not used by --format openb"),
        ({"format": "synthetic", "path": None, "vc": "x"}, "--vc is not used by --format synthetic"),
        ({"format": "generic", "vc_sizes": Path("v.csv")}, "--vc-sizes is not used by --format generic"),
        ({"format": "philly", "nodes": Path("n.csv")}, "--nodes is not used by --format philly"),
        ({"format": "synthetic", "path": None, "skip_invalid": True}, "--skip-invalid is not used"),
        ({"format": "synthetic", "path": Path("t.csv")}, "generates its trace: drop --trace"),
    ],
)
def test_an_option_a_format_does_not_use_is_refused(fields: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        TraceSource(**{"path": Path("t.csv"), **fields})  # type: ignore[arg-type]


def test_every_format_is_a_registered_reader() -> None:
    assert set(READERS) == {"philly", "openb", "generic", "synthetic"}
    with pytest.raises(ConfigError, match="unknown trace format 'csv'; choose one of philly, openb"):
        TraceSource(format="csv", path=Path("t.csv"))


def test_a_sweep_refuses_seeds_without_loads_and_a_load_with_them() -> None:
    assert sweep_of("10,20", seeds=2, load=None) == [10.0, 20.0]
    with pytest.raises(ConfigError, match="--seeds is used only by a --loads sweep"):
        sweep_of(None, seeds=2, load=None)
    with pytest.raises(ConfigError, match="--load and --loads both"):
        sweep_of("10", seeds=None, load=5.0)
