"""`mount_console`: the web console at ``/ui`` of the control plane's own app (same process, port, TLS).

Server-rendered pages (Jinja2) with a small script layer (htmx for partial swaps, uPlot for charts,
one EventSource for live updates). Every page and action checks the caller against the ONE permission
table (`skyline.security.rbac`), exactly as the API routes do.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.gzip import GZipMiddleware

from skyline.cluster import schema as t
from skyline.cluster.console.assets import SETUP_HINT, Assets
from skyline.cluster.console.feed import ChangeFeed
from skyline.cluster.console.formatting import FILTERS
from skyline.cluster.console.session import LoginRequiredError, Session, session_of
from skyline.cluster.control import ControlPlane
from skyline.cluster.service_plane import ServicePlane
from skyline.errors import ConfigError, SkylineError
from skyline.security.tokens import TokenAuthority

log = logging.getLogger("skyline.console")

TEMPLATES = Path(__file__).parent / "templates"
# No inline script runs (data travels in data-* attributes and JSON blocks): a script injected into
# a page could not run. uPlot sizes its canvas with inline styles, hence 'unsafe-inline' for styles only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    """What the console shows beyond the store: the policy's name, the audit log, the model repository."""

    policy: str
    audit_log: Path | None = None
    model_repository: Path | None = None
    trusted_keys: tuple[Path, ...] = ()  # public keys that may have signed the repository's versions
    # The edge agents the cloud knows (one dict per agent: agent, labels, health, last_seen_s_ago, models,
    # uplink_backlog), from `skyline.edge`'s fleet store — given by the caller: edge is not below cluster.
    edge_fleet: Callable[[], list[dict[str, Any]]] | None = None
    poll_s: float = 1.0  # how often the ONE change poller looks at the store while pages are open
    stream_lifetime_s: float = 15.0  # an SSE stream then ends and the browser reconnects (resuming)
    page_size: int = 50

    def __post_init__(self) -> None:
        if not 0.05 <= self.poll_s <= 60:
            raise ConfigError(f"console poll_s must be in [0.05, 60] seconds, got {self.poll_s}")
        if not self.stream_lifetime_s > self.poll_s:
            raise ConfigError(
                f"stream_lifetime_s must exceed poll_s ({self.poll_s}), got {self.stream_lifetime_s}"
            )
        if not 1 <= self.page_size <= 500:
            raise ConfigError(f"console page_size must be 1..500 rows, got {self.page_size}")
        object.__setattr__(self, "trusted_keys", tuple(Path(p) for p in self.trusted_keys))
        if self.model_repository is not None and not Path(self.model_repository).is_dir():
            raise ConfigError(
                f"--model-repository {self.model_repository} is not a folder; pass the repository's path"
            )
        missing = [str(p) for p in self.trusted_keys if not p.is_file()]
        if missing:
            raise ConfigError(f"--trusted-key file(s) not found: {', '.join(missing)}")


class Console:
    """What every console route needs: the control plane, the token authority, templates, the feed."""

    def __init__(
        self,
        control: ControlPlane,
        authority: TokenAuthority,
        config: ConsoleConfig,
        services: ServicePlane | None = None,
    ) -> None:
        self.control = control
        self.services = services
        self.store = control.store
        self.engine: sa.Engine = control.store.db.engine
        self.authority = authority
        self.config = config
        self.assets = Assets()
        if self.assets.missing:
            log.warning(
                "console: front-end files missing (%s); %s", ", ".join(self.assets.missing), SETUP_HINT
            )
        self.feed = ChangeFeed(self.engine, poll_s=config.poll_s, lifetime_s=config.stream_lifetime_s)
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), auto_reload=False
        )
        self.templates.globals["asset"] = self.assets.url
        self.templates.filters.update(FILTERS)

    def session(self, request: Request) -> Session:
        return session_of(request, self.authority)

    def newest_event(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(t.job_events.c.id))).scalar() or 0)

    def page(
        self, request: Request, template: str, session: Session | None, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render a page (or, for an htmx request naming ``fragment``, only that part)."""
        fragment = context.pop("fragment", None)
        name = fragment if fragment and request.headers.get("hx-request") else template
        html = self.templates.get_template(name).render(
            request=request, session=session, path=request.url.path, missing_assets=self.assets.missing,
            **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def close(self) -> None:
        self.feed.close()


def mount_console(
    app: FastAPI,
    control: ControlPlane,
    authority: TokenAuthority,
    config: ConsoleConfig,
    *,
    services: ServicePlane | None = None,
) -> Console:
    """Serve the console under ``/ui`` of ``app``; return it (``close`` ends its live streams).

    With ``services``, Overview lists them, Scheduling shows their forecasts and the autoscaler's
    decisions, and Models says which services serve each version.
    """
    from skyline.cluster.console import pages_access, pages_cluster, pages_jobs, pages_records

    console = Console(control, authority, config, services)
    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ui.add_middleware(GZipMiddleware, minimum_size=1024)
    _error_pages(ui, console)
    for module in (pages_access, pages_jobs, pages_cluster, pages_records):
        module.register(ui, console)

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.mount("/ui", ui)
    return console


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/ui/data/", "/ui/events")) or path.endswith("/stream")


def _error_pages(ui: FastAPI, console: Console) -> None:
    async def login_required(request: Request, exc: Exception) -> Response:
        if _wants_json(request) or request.method != "GET":
            return JSONResponse({"error": str(exc)}, status_code=401)
        return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)

    async def skyline_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SkylineError)
        if _wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.http_status)
        try:
            session: Session | None = console.session(request)
        except LoginRequiredError:
            session = None
        return console.page(request, "error.html", session, status=exc.http_status, message=str(exc))

    ui.add_exception_handler(LoginRequiredError, login_required)
    ui.add_exception_handler(SkylineError, skyline_error)
