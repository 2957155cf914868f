"""A torch DDP gang that no single node holds runs across two CPU nodes, through the real control plane."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.core.net import PortRange, port_is_bindable
from skyline.testing.cluster import wait_until
from skyline.testing.executors import node_agents

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("policy", ["fifo"])
def test_a_two_node_ddp_gang_of_two_cpu_replicas_runs_on_two_two_cpu_nodes(
    tmp_path: Path, policy: str
) -> None:
    # One port, free now and below the kernel's ephemeral range: a port the kernel hands out (free_port)
    # can be taken by any outgoing connection before the rank-0 replica binds it (CI saw that collision).
    port = next(p for p in range(29500, 30000) if port_is_bindable(p))
    ports = PortRange(first=port, last=port)
    config = ServerConfig(
        state_dir=tmp_path, port=0, policy=policy, master_ports=ports, control=ControlConfig(tick_s=0.2)
    )
    with ServerThread(config) as server, node_agents(server.url, server.built.authority, ("a", "b"), cpus=2):
        token = server.built.authority.bootstrap_admin() or ""
        with ClusterClient(server.url, token) as client:
            wait_until(lambda: len(client.nodes()) == 2)
            command = f"{sys.executable} -m skyline.cluster.ddp_example --steps 5"
            job = client.submit({"command": command, "replicas": 2, "cpus": 2, "memory_mib": 512})
            done = client.wait(job["id"], timeout_s=120)
            assert done["status"] == "succeeded", done
            assert sorted(r["node_id"] for r in done["placement"]) == ["a", "b"]
            lines = [ln["line"] for ln in client.logs(job["id"])["lines"]]
            finals = sorted(line for line in lines if "mean final loss" in line)
            assert [f.split(" on ")[0] for f in finals] == ["rank 0/2", "rank 1/2"]
            port = int(finals[0].split(" on ")[1].split(":")[1])
            assert ports.first <= port <= ports.last
