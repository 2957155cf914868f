"""Running the LLM server: build the engine and the app from one config, serve in the background or until
a signal. Both go through `skyline.serving.server.BackgroundServer`, the project's one server runner.

One process, one engine: a model's weights and KV cache are too large to copy into uvicorn worker
processes, and continuous batching already keeps the cores busy from one engine thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skyline.errors import ConfigError
from skyline.llm.engine import ENGINES, Engine, EngineConfig, create_engine

if TYPE_CHECKING:
    from fastapi import FastAPI

    from skyline.serving.server import BackgroundServer

__all__ = ["LLMServerConfig", "build_app", "running_server", "serve_forever"]

START_TIMEOUT_S = 300.0  # the app's warm-up runs before the server counts as started


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMServerConfig:
    """What ``skyline llm serve`` runs: an engine (``engine_name`` in `ENGINES`, built from ``engine``) behind
    the OpenAI API on ``host:port`` (0: a free port). ``tokens`` None means no authentication (the CLI
    allows that only on loopback); ``tls`` = (certificate, key) serves HTTPS only."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    engine_name: str = "native"
    host: str = "127.0.0.1"
    port: int = 8000
    tokens: Path | None = None
    tls: tuple[Path, Path] | None = None
    max_waiting: int = 64
    rate_limit_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.engine_name not in ENGINES:
            raise ConfigError(
                f"engine {self.engine_name!r} is unknown; choose one of {', '.join(sorted(ENGINES))}"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port is {self.port}; it must be in 0..65535 (0: a free port)")
        if self.max_waiting < 1:
            raise ConfigError(f"max_waiting is {self.max_waiting}; it must be ≥ 1")
        if self.rate_limit_per_s is not None and (not self.rate_limit_per_s > 0 or self.tokens is None):
            raise ConfigError(
                f"a rate limit of {self.rate_limit_per_s} needs a positive rate and a token file"
            )


def _check_tls(config: LLMServerConfig) -> None:
    if config.tls is not None:
        from skyline.security.tls import uvicorn_ssl_kwargs

        uvicorn_ssl_kwargs(*config.tls)  # files present, key private: fail before loading a model


def build_app(config: LLMServerConfig, engine: Engine | None = None) -> FastAPI:
    """The app of ``config`` around ``engine`` (built from ``config.engine`` when None: loads the model)."""
    from skyline.llm.api import create_app
    from skyline.security.tokens import TokenAuthority

    _check_tls(config)
    return create_app(
        engine if engine is not None else create_engine(config.engine_name, config.engine),
        authority=TokenAuthority(config.tokens) if config.tokens is not None else None,
        rate_limit_per_s=config.rate_limit_per_s,
        max_waiting=config.max_waiting,
    )


@contextmanager
def running_server(config: LLMServerConfig, engine: Engine | None = None) -> Iterator[BackgroundServer]:
    """Serve in a background thread of this process; yields once warmed up (``server.url``), stops after."""
    from skyline.serving.server import BackgroundServer

    owned = engine is None  # an engine built here is closed here (transformers' keeps a thread alive)
    if engine is None:
        _check_tls(config)
        engine = create_engine(config.engine_name, config.engine)
    try:
        app = build_app(config, engine)
        with BackgroundServer(
            app, host=config.host, port=config.port, tls=config.tls, start_timeout_s=START_TIMEOUT_S
        ) as server:
            yield server
    finally:
        if owned:
            engine.close()


def serve_forever(config: LLMServerConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; ``on_ready(url)`` is called once the model is warmed up."""
    from skyline.serving.server import wait_for_stop_signal

    with running_server(config) as server:
        if on_ready is not None:
            on_ready(server.url)
        wait_for_stop_signal()
