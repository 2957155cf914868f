"""The demo step runs, twice in the same folder, and reports every tampering case as refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.cli.demo import DemoContext
from skyline.cli.demo_steps import security

pytestmark = pytest.mark.unit


def test_security_step_refuses_every_tampering_case_and_reruns(tmp_path: Path) -> None:
    ctx = DemoContext(out_dir=tmp_path, quick=True, shared_data=None)
    for _ in range(2):
        report = security.run(ctx)
        assert report.metrics["tamper_cases_refused"] == 4
        assert report.metrics["envelope_round_trip_ok"] is True
        assert report.metrics["delete_job_status"] == {"admin": "200", "viewer": "403", "forged": "401"}
        assert "rollback refused" in report.summary
        assert report.figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
