"""One node agent in the demo's own process, joined to a control plane the step started (cluster, console,
services steps)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from skyline.cli.demo import DemoContext


@contextmanager
def demo_node(
    ctx: DemoContext, server: Any, *, cpus: int = 4, heartbeat_s: float = 0.2
) -> Iterator[tuple[Any, str]]:
    """A node agent ``demo-node`` running for the block; yields an admin client and its token."""
    from skyline.cluster.agent import AgentConfig, NodeAgent
    from skyline.cluster.client import ClusterClient

    authority = server.built.authority
    # A rerun into the same --out finds the first admin token already issued: issue another.
    token = authority.bootstrap_admin() or authority.issue("demo", "admin")
    agent = NodeAgent(
        ClusterClient(server.url, authority.issue("agent-demo", "agent")),
        AgentConfig(
            name="demo-node", heartbeat_s=heartbeat_s, cpus=cpus, memory_mib=4096, workdir=str(ctx.out_dir)
        ),
    )
    with ClusterClient(server.url, token) as admin, agent.in_background():
        yield admin, token
