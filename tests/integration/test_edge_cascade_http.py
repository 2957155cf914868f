"""The cascade against a real cloud app over the emulated link: answers, real timeouts, outages, auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from skyline.edge.cascade import CascadeRouter
from skyline.edge.cloud_client import CloudClient
from skyline.edge.detector import HardExampleDetector
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.errors import AuthError, UnavailableError
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority
from skyline.testing.edge import EdgeWorld, constant_classifier, edge_world

pytestmark = pytest.mark.integration


def _edge(x: np.ndarray) -> np.ndarray:
    return np.array([[0.4, 0.35, 0.25]], dtype=np.float32)  # always unsure: always offloaded


@pytest.fixture
def world(tmp_path: Path) -> Iterator[EdgeWorld]:
    cloud_model = constant_classifier((1, 8, 8), label=2)  # the cloud says 2 to everything
    with edge_world(tmp_path, served=[(cloud_model, {"name": "cloud", "input_shape": (1, 8, 8)})]) as built:
        yield built


@pytest.fixture
def token(world: EdgeWorld) -> tuple[TokenAuthority, str]:
    return world.cloud.authority, world.token


@pytest.fixture
def proxy(world: EdgeWorld) -> Iterator[LinkProxy]:
    with LinkProxy(world.cloud.port, LinkConditions(latency_ms=1)) as link:
        yield link


def _router(link: LinkProxy, timeout_s: float, token: str) -> tuple[CascadeRouter, CloudClient]:
    client = CloudClient(link.url, token=token, timeout_s=timeout_s)
    detector = HardExampleDetector(method="max-prob", threshold=0.2)
    return CascadeRouter(edge=_edge, cloud=lambda x: client.infer("cloud", x), detector=detector), client


def test_cloud_answers_hard_inputs_over_http(proxy: LinkProxy, token: tuple[TokenAuthority, str]) -> None:
    router, client = _router(proxy, timeout_s=5.0, token=token[1])
    answer = router.answer(np.zeros((1, 8, 8), np.float32))
    assert (answer.label, answer.source, answer.degraded) == (2, "cloud", False)
    client.close()


def test_slow_cloud_times_out_and_the_edge_answers(
    proxy: LinkProxy, token: tuple[TokenAuthority, str]
) -> None:
    proxy.conditions = LinkConditions(latency_ms=400)  # 800 ms round trip, the client waits 100 ms
    router, client = _router(proxy, timeout_s=0.1, token=token[1])
    answer = router.answer(np.zeros((1, 8, 8), np.float32))
    assert (answer.label, answer.source, answer.degraded) == (0, "edge", True)
    client.close()


def test_cloud_outage_and_bad_token(proxy: LinkProxy, token: tuple[TokenAuthority, str]) -> None:
    proxy.set_outage(True)
    client = CloudClient(proxy.url, token=token[1], timeout_s=1.0)
    with pytest.raises(UnavailableError, match="unreachable"):
        client.infer("cloud", np.zeros((1, 1, 8, 8), np.float32))
    proxy.set_outage(False)
    wrong = CloudClient(proxy.url, token="wrong", timeout_s=1.0)
    with pytest.raises(AuthError):
        wrong.infer("cloud", np.zeros((1, 1, 8, 8), np.float32))
    client.close()
    wrong.close()
    viewer = CloudClient(proxy.url, token=token[0].issue("viewer-1", Role.VIEWER), timeout_s=1.0)
    with pytest.raises(AuthError):  # deny by default: a viewer may not invoke models
        viewer.infer("cloud", np.zeros((1, 1, 8, 8), np.float32))
    viewer.close()


def test_split_cut_follows_the_measured_link(proxy: LinkProxy, token: tuple[TokenAuthority, str]) -> None:
    from skyline.edge.cloud_client import measure_network
    from skyline.edge.partition import LayerProfile, PartitionController

    # A head that shrinks a 200 kB input to 1 kB for 50 ms of edge time; the tail is cheap in the cloud.
    layers = [
        LayerProfile(name="shrink", edge_ms=50.0, cloud_ms=0.5, output_bytes=1000),
        LayerProfile(name="classify", edge_ms=200.0, cloud_ms=1.0, output_bytes=40),
    ]
    client = CloudClient(proxy.url, token=token[1], timeout_s=30.0)
    controller = PartitionController(
        layers, 200_000, lambda: measure_network(client, probe_bytes=64 * 1024), alpha=1.0
    )
    proxy.conditions = LinkConditions(latency_ms=1, bandwidth_mbps=1000)  # 200 kB ≈ 1.6 ms
    fast = controller.refresh()
    proxy.conditions = LinkConditions(latency_ms=1, bandwidth_mbps=2)  # 200 kB ≈ 800 ms, 1 kB ≈ 4 ms
    slow = controller.refresh()
    assert controller.network is not None and controller.network.bandwidth_mbps < 10
    assert fast == 0 and slow == 1  # cloud-only on the fast link; cut after "shrink" on the slow one
    client.close()
