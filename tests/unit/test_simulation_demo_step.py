"""The `sim` demo step runs on the synthetic fallback (no shared data) and reports three policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.cli.demo import DemoContext
from skyline.cli.demo_steps import sim

pytestmark = pytest.mark.unit


def test_sim_step_synthetic_fallback(tmp_path: Path) -> None:
    report = sim.run(DemoContext(out_dir=tmp_path, quick=True, shared_data=None))
    assert set(report.metrics) == {"fifo", "tiresias-las", "tiresias-gittins"}
    assert "synthetic" in report.summary
    assert all(f.stat().st_size > 1000 for f in report.figures)
