"""The cluster views: Overview (nodes by tier, jobs by state, utilization), Nodes, a node's page, and
Scheduling (the policy, the waiting queue and why each job waits)."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from skyline.cluster.console import queries
from skyline.cluster.console.core import Console
from skyline.cluster.console.services_view import scaling_panels, service_rows
from skyline.cluster.console.session import owner_scope
from skyline.security.rbac import authorize

HISTORY_S = 600.0  # what the charts show when a page opens; live samples are appended after
TIER_BUCKET_S = 5.0


def _tier_summary(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tier: alive and lost nodes, the alive nodes' capacity, and their mean utilization now."""
    tiers: dict[str, dict[str, Any]] = {}
    for node in nodes:
        tier = tiers.setdefault(
            node["tier"],
            {"tier": node["tier"], "alive": 0, "lost": 0, "cpu_milli": 0, "memory_mib": 0, "gpu_milli": 0,
             "samples": []},
        )  # fmt: skip
        if node["status"] != "alive":
            tier["lost"] += 1
            continue
        tier["alive"] += 1
        for key in ("cpu_milli", "memory_mib", "gpu_milli"):
            tier[key] += node[key]
        if node["sample"]:
            tier["samples"].append(node["sample"])
    for tier in tiers.values():
        samples = tier.pop("samples")
        for key in ("cpu_percent", "memory_percent", "gpu_percent"):
            values = [s[key] for s in samples if s[key] is not None]
            tier[key] = sum(values) / len(values) if values else None
    return [tiers[name] for name in sorted(tiers)]


def register(ui: FastAPI, console: Console) -> None:
    @ui.get("/")
    def overview(request: Request) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "nodes")
        owner = owner_scope(session.principal)
        last_event = console.newest_event()
        with console.engine.connect() as conn:
            nodes = queries.nodes(conn)
            counts = queries.job_counts(conn, owner=owner)
            history = queries.tier_history(conn, since_s=time.time() - HISTORY_S, bucket_s=TIER_BUCKET_S)
        return console.page(
            request, "overview.html", session, nav="overview", tiers=_tier_summary(nodes), counts=counts,
            history=history, last_event=last_event,
            services=service_rows(console.services, session.principal),
        )  # fmt: skip

    _nodes(ui, console)
    _scheduling(ui, console)


def _nodes(ui: FastAPI, console: Console) -> None:
    @ui.get("/nodes")
    def nodes_page(request: Request) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "nodes")
        with console.engine.connect() as conn:
            nodes = queries.nodes(conn)
        return console.page(request, "nodes.html", session, nav="nodes", nodes=nodes)

    @ui.get("/nodes/{node_id}")
    def node_page(request: Request, node_id: str) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "nodes")
        authorize(session.principal, "read", "metrics")
        with console.engine.connect() as conn:
            node = queries.node_detail(conn, node_id)
            history = queries.node_history(conn, node_id, since_s=time.time() - HISTORY_S)
        scope = owner_scope(session.principal)
        for replica in node["replica_rows"]:  # an operator sees that a slot is taken, not whose job
            replica["visible"] = scope is None or replica["owner"] == scope
        return console.page(request, "node.html", session, nav="nodes", node=node, history=history)


def _scheduling(ui: FastAPI, console: Console) -> None:
    @ui.get("/scheduling")
    def scheduling(request: Request) -> Response:
        session = console.session(request)
        authorize(session.principal, "read", "jobs")
        scope = owner_scope(session.principal)
        with console.engine.connect() as conn:
            waiting = queries.waiting_queue(conn)
        now = time.time()
        for position, job in enumerate(waiting, start=1):
            job["position"] = position
            job["waited_s"] = now - job["submitted_at"]
            job["visible"] = scope is None or job["owner"] == scope
        return console.page(
            request, "scheduling.html", session, nav="scheduling", policy=console.config.policy,
            waiting=waiting, last_event=console.newest_event(),
            panels=scaling_panels(console.services, session.principal),
        )  # fmt: skip
