"""`BackgroundServer`, the one helper that runs a server on a thread: lifespan, ports, failures, signals."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from skyline.errors import ConfigError, UnavailableError
from skyline.serving.server import BackgroundServer, wait_for_stop_signal

pytestmark = pytest.mark.integration


def _app(events: list[str], *, fail_startup: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if fail_startup:
            raise RuntimeError("cannot load the model")
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_serves_on_a_free_port_runs_the_lifespan_and_releases_the_port() -> None:
    events: list[str] = []
    with BackgroundServer(_app(events)) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert events == ["startup"]  # the lifespan ran before start returned
        assert httpx.get(server.url + "/ping", timeout=10).json() == {"pong": "yes"}
        assert not _bindable(server.port)
    assert events == ["startup", "shutdown"]
    assert _bindable(server.port)


def test_a_taken_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:"):
            BackgroundServer(_app([]), port=taken.getsockname()[1])


def test_an_app_that_cannot_start_is_unavailable_and_frees_its_port() -> None:
    server = BackgroundServer(_app([], fail_startup=True), start_timeout_s=10)
    with pytest.raises(UnavailableError, match="did not start"):
        server.start()
    assert _bindable(server.port)


def test_wait_for_stop_signal_returns_on_sigterm_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    wait_for_stop_signal(timeout_s=30)
    assert time.monotonic() - started < 10
    assert signal.getsignal(signal.SIGTERM) == before
