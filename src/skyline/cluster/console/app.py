"""`mount_console`: the web console at ``/ui`` of the control plane's own app (same process, port, TLS).

Server-rendered pages (Jinja2) with a small script layer (htmx for partial swaps, uPlot for charts,
one EventSource for live updates). Every page and action checks the caller against the ONE permission
table (`skyline.security.rbac`), exactly as the API routes do.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.middleware.gzip import GZipMiddleware

from skyline.cluster.console import pages_access, pages_cluster, pages_jobs, pages_records
from skyline.cluster.console.core import Console, ConsoleConfig
from skyline.cluster.console.session import LoginRequiredError, Session
from skyline.cluster.control import ControlPlane
from skyline.cluster.service_plane import ServicePlane
from skyline.errors import SkylineError
from skyline.security.tokens import TokenAuthority


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
