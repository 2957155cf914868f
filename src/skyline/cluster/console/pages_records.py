"""The Models view (repository versions, their signatures and where they are served) and the Audit view
(the hash-chained log and whether its chain verifies)."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import Response

from skyline.cluster.console.catalog import Catalog
from skyline.cluster.console.core import Console
from skyline.cluster.console.services_view import served_by
from skyline.security.rbac import authorize

AUDIT_PAGE = 100


def register(ui: FastAPI, console: Console) -> None:
    config = console.config
    catalog = Catalog(config.model_repository, config.trusted_keys, config.audit_log)

    @ui.get("/models")
    async def models(request: Request) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "repository")
        # Verifying signatures hashes files: off the event loop (cached until a file changes).
        found = await asyncio.to_thread(catalog.models)
        keys = await asyncio.to_thread(catalog.key_ids)
        serving = served_by(console.services)
        fleet = config.edge_fleet
        agents = await asyncio.to_thread(fleet) if fleet is not None else []
        for model in found:
            for version in model["versions"]:
                version["served_by"] = serving.get(f"{model['name']}:{version['version']}", [])
        return console.page(
            request, "models.html", session, nav="models", models=found, keys=keys,
            repository=config.model_repository, edge_agents=agents, edge_configured=fleet is not None,
        )  # fmt: skip

    @ui.get("/audit")
    async def audit(request: Request, before: int | None = None) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "audit")
        log = await asyncio.to_thread(catalog.audit, before=before, limit=AUDIT_PAGE)
        return console.page(request, "audit.html", session, nav="audit", log=log, log_path=config.audit_log)
