"""`skyline forecast backtest|autoscale` as a user runs them: real CSV files, JSON contracts, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skyline.cli.app import main
from skyline.testing.forecasting import noisy_weekly

pytestmark = pytest.mark.e2e

METRICS = {"mae", "rmse", "wmape", "mase", "p90_coverage"}
OUTCOMES = {"slo_violations", "unserved", "provisioned_hours", "scaling_actions"}


def skyline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def requests_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fifteen days of request events (one row per request), drawn from a daily+weekly rate."""
    series = noisy_weekly(days=15, seed=3)
    rng = np.random.default_rng(0)
    rows = ["time,kind"]
    for start, count in zip(series.times_s(), series.values.astype(int), strict=True):
        for offset in np.sort(rng.uniform(0, series.step_s, count)):
            stamp = np.datetime64(int(start + offset), "s").astype(str).replace("T", " ")
            rows.append(f"{stamp},TXT_2_IMG")
    path = tmp_path_factory.mktemp("data") / "requests.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_backtest_writes_the_documented_json_and_a_plot(requests_csv: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "bt.json", tmp_path / "bt.png"
    result = skyline(
        "forecast", "backtest", "--series", str(requests_csv), "--time-col", "time", "--count",
        "--agg", "1h", "--horizon", "1h", "--test-days", "3",
        "--models", "persistence,seasonal-naive-daily,seasonal-naive-weekly", "--json", str(out), "--plot", str(png),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # quiet with --json
    payload = json.loads(out.read_text())
    assert set(payload) == {"series", "horizon", "models"} and payload["horizon"] == 1
    assert set(payload["models"]) == {"persistence", "seasonal-naive-daily", "seasonal-naive-weekly"}
    for metrics in payload["models"].values():
        assert set(metrics) == METRICS and metrics["mae"] >= 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_autoscale_compare_writes_three_policies_and_a_pareto_plot(
    requests_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "as.json"
    result = skyline(
        "forecast", "autoscale", "--series", str(requests_csv), "--time-col", "time", "--count",
        "--agg", "1h", "--test-days", "3", "--model", "seasonal-naive-weekly", "--compare", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    assert set(payload["policies"]) == {"predictive", "reactive", "static"}
    for outcome in payload["policies"].values():
        assert set(outcome) == OUTCOMES
    assert 0 <= payload["dominated_share"] <= 1
    assert (tmp_path / "as-pareto.png").read_bytes()[:4] == b"\x89PNG"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("t,v\n2024-01-01 01:00,1\n2024-01-01 00:00,2\n", (), "not sorted"),
        ("t,v\n2024-01-01 00:00,1\n2024-01-01 00:00,2\n", (), "duplicate timestamp"),
        ("t,v\n2024-01-01 00:00,1\n2024-01-01 01:00,x\n", (), "not a number"),
        ("t,v\n" + "".join(f"2024-01-01 {h:02}:00,{h}\n" for h in range(12)), (), "needs at least"),
        ("t,v\n2024-01-01 00:00,1\n", ("--models", "prophet"), "prophet"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, extra: tuple[str, ...], message: str
) -> None:
    args = ["forecast", "backtest", "--series", _write(tmp_path, text), "--time-col", "t", "--value-col", "v"]
    args += [
        "--agg",
        "1h",
        "--horizon",
        "1",
        "--test-days",
        "0.1",
        "--models",
        "seasonal-naive-daily",
        *extra,
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert error.startswith("error: ") and message in error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error


def test_autoscale_rejects_an_unknown_policy(capsys: pytest.CaptureFixture[str], requests_csv: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "forecast",
                "autoscale",
                "--series",
                str(requests_csv),
                "--time-col",
                "time",
                "--count",
                "--policy",
                "magic",
            ]
        )
    assert exit_info.value.code == 2 and "predictive, reactive, static" in capsys.readouterr().err
