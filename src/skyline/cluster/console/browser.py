"""A headless Chromium for the console's screenshots (``skyline demo``), tests and benchmark.

Debian's ``/usr/bin/chromium`` (scripts/system-deps.sh installs it) driven by Playwright; nothing is
downloaded. Background networking, sync and component updates are off: the machine has no network
beyond loopback, and a browser must not try to reach one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skyline.errors import UnavailableError

CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def chromium_path() -> Path | None:
    """The Chromium to drive: ``SKYLINE_CHROMIUM``, else Debian's, else one on ``PATH``."""
    for candidate in (os.environ.get("SKYLINE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Playwright ``Browser`` on the system Chromium (`UnavailableError` when there is none)."""
    path = chromium_path()
    if path is None:
        raise UnavailableError(
            "no Chromium found (install Debian's 'chromium' with scripts/system-deps.sh, or set SKYLINE_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, base_url: str, token: str, *, next_path: str = "/ui/") -> None:
    """Fill the console's login form with ``token`` and wait for the page it leads to."""
    page.goto(f"{base_url}/ui/login?next={next_path}")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("form.login button[type=submit]")
