"""The Ray executor on a multi-node Ray cluster on this machine (ray.cluster_utils.Cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # Ray's node launcher leaves /dev/null handles for the garbage collector (Ray's code, not ours).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
STORE_BYTES = 80 * 1024**2


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


def test_ray_runs_a_gang_in_one_placement_group_on_the_chosen_node(ray_cluster: str, tmp_path: Path) -> None:
    config = ServerConfig(
        state_dir=tmp_path, port=0, executor="ray", ray_address=ray_cluster, control=ControlConfig(tick_s=0.2)
    )
    with ServerThread(config) as server:
        token = server.built.authority.bootstrap_admin() or ""
        with ClusterClient(server.url, token) as client:
            nodes = {n["id"]: n["cpus"] for n in client.nodes()}
            assert nodes == {"big": 2.0, "small": 1.0}
            gang = client.submit({"command": "echo rank $RANK of $WORLD_SIZE", "replicas": 2, "cpus": 1})
            failing = client.submit({"command": "echo failing; exit 4", "cpus": 1})
            done = client.wait(gang["id"], timeout_s=90)
            assert done["status"] == "succeeded"
            assert [r["node_id"] for r in done["placement"]] == ["big", "big"]  # only big holds the gang
            lines = sorted(ln["line"] for ln in client.logs(gang["id"])["lines"])
            assert lines == ["rank 0 of 2", "rank 1 of 2"]
            failed = client.wait(failing["id"], timeout_s=90)
            assert failed["status"] == "failed" and failed["exit_code"] == 4
