"""For the console's browser tests: run where Chromium and the npm front-end files are, skip elsewhere,
and fail instead of skipping under ``CI=true`` (CI must exercise them)."""

from __future__ import annotations

import os

import pytest

from skyline.cluster.console.assets import AXE_SCRIPT, NODE_MODULES, VENDOR
from skyline.cluster.console.browser import chromium_path


def missing_browser_parts() -> list[str]:
    """What the console's browser tests need and this machine lacks."""
    missing = [] if chromium_path() else ["Chromium (/usr/bin/chromium)"]
    missing += [name for name, rel in VENDOR.items() if not (NODE_MODULES / rel).is_file()]
    return missing + ([] if AXE_SCRIPT.is_file() else ["axe-core"])


def require_browser() -> None:
    """Call at module level: skip the module where parts are missing, fail it under CI=true."""
    missing = missing_browser_parts()
    if not missing:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI=true but the console's browser tests cannot run: missing {missing}", pytrace=False)
    pytest.skip(
        f"no browser test without {', '.join(missing)} (make setup installs them)", allow_module_level=True
    )
