"""A service on the Ray executor scales out over a multi-node Ray cluster on this machine.

Each replica is a one-replica job whose placement group is pinned to the node the policy chose; the
gateway routes to all of them; a scale-down stops the retired replica's server process too.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.cluster.service_client import ServiceClient
from skyline.cluster.services import ServicesConfig
from skyline.security.tokens import TokenAuthority
from skyline.serving.repository import ModelRepository
from skyline.serving.samples import write_mlp_onnx
from skyline.testing.cluster import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # Ray's node launcher leaves /dev/null handles for the garbage collector (Ray's code, not ours).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
STORE_BYTES = 80 * 1024**2
BODY = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a FutureWarning at ray.init
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": STORE_BYTES, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=2, resources={"skyline_node_big": 1}, object_store_memory=STORE_BYTES)
        cluster.add_node(num_cpus=1, resources={"skyline_node_small": 1}, object_store_memory=STORE_BYTES)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


def _listening(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == "LISTEN" for c in psutil.net_connections("tcp")
    )


def test_a_service_scales_out_over_ray_nodes(ray_cluster: str, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    ModelRepository(tmp_path / "repo").add(write_mlp_onnx(tmp_path / "mlp.onnx"), name="mlp", version=1)
    config = ServerConfig(
        state_dir=tmp_path, port=0, executor="ray", ray_address=ray_cluster, control=ControlConfig(tick_s=0.2),
        services=ServicesConfig(tick_s=0.1, probe_every_s=0.3),
    )  # fmt: skip
    # Ray names its nodes by the host's address, not loopback: replicas listen on every interface, so
    # they require tokens (skyline serve refuses to run unauthenticated there); the gateway passes them on.
    tokens = tmp_path / "replica-tokens.json"
    invoker = TokenAuthority(tokens).issue("client", "invoker")
    command = f"{sys.executable} -m skyline.cli.app serve --repo {tmp_path / 'repo'} --host 0.0.0.0 --port $PORT --tokens {tokens}"
    with (
        ServerThread(config) as server,
        ClusterClient(server.url, server.built.authority.bootstrap_admin() or "") as client,
    ):
        services = ServiceClient(client)
        # Three one-CPU replicas: "big" (2 CPUs) holds two, "small" (1 CPU) the third.
        services.deploy({"name": "mlp", "command": command, "cpus": 1, "replicas": 3, "max_replicas": 3})
        status = services.wait_ready("mlp", timeout_s=120)
        assert Counter(r["node_id"] for r in status["replicas"]) == {"big": 2, "small": 1}
        endpoint = server.built.services.endpoint("mlp") + "/v2/models/mlp/infer"
        with httpx.Client(headers={"authorization": f"Bearer {invoker}"}) as http:
            assert all(http.post(endpoint, json=BODY).status_code == 200 for _ in range(30))
        served = server.built.services.gateway.totals()["mlp"][0]
        assert served == 30
        services.scale("mlp", replicas=1)
        wait_until(lambda: len(services.status("mlp")["replicas"]) == 1, timeout_s=60)
        retired = [
            r
            for r in status["replicas"]
            if r["job_id"] not in {x["job_id"] for x in services.status("mlp")["replicas"]}
        ]
        wait_until(
            lambda: not any(_listening(r["port"]) for r in retired), timeout_s=30
        )  # their servers stopped
        services.delete("mlp")
        wait_until(lambda: not services.all(), timeout_s=60)
        time.sleep(0.5)
        assert not any(_listening(r["port"]) for r in status["replicas"])
