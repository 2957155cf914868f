"""`serve_forever`, in this process: it announces a control plane that answers, keeps the start-up heap out
of the garbage collector's full collections while it serves, and gives it back when it stops."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pytest

from skyline.cluster.server import ServerConfig, Serving, serve_forever

pytestmark = pytest.mark.integration


def test_the_start_up_heap_is_frozen_while_serving_and_released_after(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    def announce(serving: Serving) -> None:
        health = httpx.get(serving.url + "/healthz", timeout=10)
        seen.append((health.status_code, gc.get_freeze_count()))

    before = gc.get_freeze_count()
    serve_forever(ServerConfig(state_dir=tmp_path, port=0), announce=announce, stop_after_s=0.2)
    ((status, frozen),) = seen
    assert status == 200
    # Everything alive at start-up (this test process's modules included) was frozen: far more than none.
    assert frozen > before + 10_000
    assert gc.get_freeze_count() == before
