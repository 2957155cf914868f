"""A service and batch jobs on one live cluster under `forecast-reserve`: batch work leaves the capacity the
service is forecast to need free, and when the forecast was too low a new replica preempts batch work."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.cluster.service_client import ServiceClient
from skyline.cluster.services import ServicesConfig
from skyline.core import DemandForecast
from skyline.serving.repository import ModelRepository
from skyline.serving.samples import write_mlp_onnx
from skyline.testing.cluster import AgentProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _statuses(client: ClusterClient, ids: list[str]) -> list[str]:
    return [client.job(i)["status"] for i in ids]


def test_forecast_reserve_keeps_the_services_capacity_free(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    ModelRepository(tmp_path / "repo").add(write_mlp_onnx(tmp_path / "mlp.onnx"), name="mlp", version=1)
    config = ServerConfig(
        state_dir=tmp_path, port=0, policy="forecast-reserve", control=ControlConfig(tick_s=0.2),
        services=ServicesConfig(tick_s=0.1, probe_every_s=0.3),
    )  # fmt: skip
    command = f"{sys.executable} -m skyline.cli.app serve --repo {tmp_path / 'repo'} --port $PORT --insecure-no-auth-local-only"
    with ServerThread(config) as server:
        authority = server.built.authority
        agent = AgentProcess(server.url, authority.issue("agent-1", "agent"), "n1", log_dir=tmp_path, cpus=3)
        try:
            with ClusterClient(server.url, authority.bootstrap_admin() or "") as client:
                services = ServiceClient(client)
                wait_until(lambda: client.nodes())
                services.deploy({"name": "svc", "command": command, "cpus": 1, "max_replicas": 3})
                services.wait_ready("svc", timeout_s=90)
                # The service is forecast to need 2 replicas soon: 1 CPU of the 2 left stays free.
                forecast = DemandForecast(series="service:svc", start_s=0.0, step_s=10.0, point=(1.0, 2.0),
                                          quantiles={0.9: (1.0, 2.0)})  # fmt: skip
                server.built.control.set_forecasts({"service:svc": forecast})
                batch = [
                    client.submit({"command": "sleep 60", "cpus": 1, "name": f"b{i}"})["id"] for i in range(2)
                ]
                wait_until(lambda: _statuses(client, batch) == ["running", "pending"], timeout_s=30)
                # The forecast scale-up finds its room at once.
                services.scale("svc", replicas=2)
                services.wait_ready("svc", replicas=2, timeout_s=90)
                assert _statuses(client, batch) == ["running", "pending"]
                # The forecast was too low: a third replica has no room, so the running batch job yields.
                services.scale("svc", replicas=3)
                services.wait_ready("svc", replicas=3, timeout_s=90)
                first = client.job(batch[0])
                assert (
                    first["status"] == "pending"
                    and first["restarts"] == 1
                    and "preempted" in first["message"]
                )
                for job_id in batch:
                    client.cancel(job_id)
                services.delete("svc")
                services.wait_gone("svc", timeout_s=60)
        finally:
            agent.stop()
