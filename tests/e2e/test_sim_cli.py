"""`skyline sim` as a user runs it: JSON contracts, one-line errors, quiet --json runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

RUN_KEYS = {
    "mean_jct_s",
    "p50_jct_s",
    "p95_jct_s",
    "p99_jct_s",
    "weighted_mean_jct_s",
    "mean_queue_s",
    "p99_queue_s",
    "makespan_s",
    "gpu_utilization",
    "preemptions",
    "decision_ms_mean",
    "decision_ms_p99",
}


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", "sim", *args], capture_output=True, text=True, timeout=240
    )


def test_policies_json() -> None:
    result = _sim("policies", "--json")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)["policies"]
    assert table["srtf"] == {"oracle": True}
    assert table["tiresias-las"] == {"oracle": False}


def test_run_json_contract_and_quiet_stdout(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = _sim(
        "run",
        "--format",
        "synthetic",
        "--jobs",
        "60",
        "--load",
        "12",
        "--cluster",
        "2x8",
        "--policy",
        "tiresias-las",
        "--window",
        "10:50",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    payload = json.loads(out.read_text())
    assert payload["policy"] == "tiresias-las" and payload["jobs"] == 60
    assert set(payload["metrics"]) == RUN_KEYS


def test_run_generic_bad_row_is_one_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("submit_time_s,duration_s,num_gpus\n0,10,1\n1,ten,1\n")
    result = _sim("run", "--format", "generic", "--trace", str(trace), "--cluster", "1x8", "--policy", "fifo")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "t.csv:3: field 'duration_s'" in result.stderr
    assert "Traceback" not in result.stderr
    ok = _sim(
        "run",
        "--format",
        "generic",
        "--trace",
        str(trace),
        "--cluster",
        "1x8",
        "--policy",
        "fifo",
        "--skip-invalid",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "r.json").read_text())["skipped_rows"] == 1


def test_compare_writes_summary_and_plots(tmp_path: Path) -> None:
    result = _sim(
        "compare",
        "--format",
        "synthetic",
        "--jobs",
        "40",
        "--load",
        "10",
        "--cluster",
        "2x8",
        "--policies",
        "fifo,srtf",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["policies"]) == {"fifo", "srtf"}
    assert set(summary["policies"]["fifo"]) >= RUN_KEYS
    assert (tmp_path / "jct_cdf.png").stat().st_size > 1000
    assert (tmp_path / "utilization.png").stat().st_size > 1000


def test_optgap_json(tmp_path: Path) -> None:
    out = tmp_path / "gap.json"
    result = _sim(
        "optgap", "--policies", "genetic,best-fit", "--instances", "2", "--jobs", "15", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    assert set(payload["policies"]["genetic"]) == {"gap_median", "gap_p95", "time_ms_median"}
    assert payload["optimal_time_ms_median"] > 0


def test_unknown_policy_and_bad_window() -> None:
    bad = _sim("run", "--format", "synthetic", "--policy", "nope")
    assert bad.returncode == 2 and "unknown policy 'nope'" in bad.stderr
    window = _sim("run", "--format", "synthetic", "--policy", "fifo", "--window", "5")
    assert window.returncode == 2 and "--window" in window.stderr


def test_flags_a_run_would_not_use_are_errors(tmp_path: Path) -> None:
    trace = tmp_path / "g.csv"
    trace.write_text("submit_time_s,duration_s,num_gpus,vc\n0,10,1,a\n1,10,2,b\n")
    base = ("run", "--format", "generic", "--trace", str(trace), "--cluster", "1x8")
    vc = _sim(*base, "--policy", "fifo", "--vc", "b", "--json", str(tmp_path / "vc.json"))
    assert vc.returncode == 0, vc.stderr
    assert json.loads((tmp_path / "vc.json").read_text())["jobs"] == 1  # only VC b's job ran
    prior = _sim(*base, "--policy", "fifo", "--gittins-prior", str(trace))
    assert prior.returncode == 2 and "fifo take(s) no GPU-time prior" in prior.stderr
    seed = _sim(*base, "--policy", "fifo", "--seed", "3")
    assert seed.returncode == 2 and "--seed is used only by" in seed.stderr
    assert "Traceback" not in prior.stderr + seed.stderr
