"""`skyline demo`'s console step: a live control plane photographed in headless Chromium.

Its own module: the step drives its own browser, which cannot run while another module's is open.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.testing.console import require_browser

pytestmark = [pytest.mark.e2e]

require_browser()


@pytest.mark.slow
def test_the_demo_step_photographs_every_main_view(tmp_path: Path) -> None:
    from skyline.cli.demo import DemoContext
    from skyline.cli.demo_steps import console

    report = console.run(DemoContext(out_dir=tmp_path, quick=True, shared_data=None))
    names = sorted(p.name for p in report.figures)
    assert names == sorted(f"console-{view}.png" for view, _, _ in console.VIEWS)
    for figure in report.figures:  # a real page, not a blank or error screen
        assert figure.stat().st_size > 20_000 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "one failed (exit code 3)" in report.summary
