"""The `Console`: what every page module needs (the control plane, the token authority, the templates, the
ONE change feed), its `ConsoleConfig`, and the security headers every page carries.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from skyline.cluster import schema as t
from skyline.cluster.console.assets import SETUP_HINT, Assets
from skyline.cluster.console.feed import ChangeFeed
from skyline.cluster.console.formatting import FILTERS
from skyline.cluster.console.session import Session, session_of
from skyline.cluster.control import ControlPlane
from skyline.cluster.service_plane import ServicePlane
from skyline.errors import ConfigError
from skyline.security.tokens import TokenAuthority

__all__ = ["SECURITY_HEADERS", "Console", "ConsoleConfig"]

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
