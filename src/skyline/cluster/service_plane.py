"""`ServicePlane`: the services side of a control plane — gateway, reconciler and autoscale loop together.

Built and started with the control plane (`skyline.cluster.server`); the API's service routes and
``/metrics`` read through it, and the scheduler's state gets its forecasts (`forecasts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyline.cluster.autoscale_loop import AutoscaleLoop
from skyline.cluster.gateway import Gateway
from skyline.cluster.service_store import ServiceRecord
from skyline.cluster.services import ServiceController, ServicesConfig
from skyline.core import DemandForecast
from skyline.security.tokens import TokenAuthority

if TYPE_CHECKING:
    from skyline.cluster.control import ControlPlane
    from skyline.cluster.store import Store


class ServicePlane:
    """Gateway on ``gateway_host:gateway_port`` (0: any free port), controller and autoscale loop;
    ``authority`` checks the tokens of services that require them (``routing.auth``); ``tls`` (certificate,
    key) serves the gateway over HTTPS only."""

    def __init__(
        self,
        store: Store,
        control: ControlPlane,
        config: ServicesConfig | None = None,
        *,
        gateway_host: str = "127.0.0.1",
        gateway_port: int = 0,
        authority: TokenAuthority | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.store, self.config = store, config or ServicesConfig()
        self.gateway = Gateway(host=gateway_host, port=gateway_port, authority=authority, tls=tls)
        self.controller = ServiceController(store, control, self.gateway, self.config)
        self.gateway.on_demand = self.controller.demand
        self.autoscale = AutoscaleLoop(
            store, self.gateway, self.config, ready_counts=lambda: self.controller.ready_counts,
            wake=self.controller.wake, publish=control.set_forecasts,
        )  # fmt: skip
        self.controller.on_scale_from_zero = self.autoscale.record_scale_from_zero

    def start(self) -> ServicePlane:
        self.gateway.start()
        self.controller.start()
        self.autoscale.start()
        return self

    def stop(self) -> None:
        """Stop deciding and routing; replicas keep running (a restarted control plane adopts them)."""
        self.autoscale.stop()
        self.controller.stop()
        self.gateway.stop()

    def forecasts(self) -> Mapping[str, DemandForecast]:
        """Each predictive service's latest forecast, in replicas (series ``service:<name>``)."""
        return self.autoscale.service_forecasts()

    def endpoint(self, name: str) -> str:
        return f"{self.gateway.url}/services/{name}"

    def collector(self) -> ServiceCollector:
        """Prometheus families of every service (added to the control plane's ``/metrics``)."""
        return ServiceCollector(self)

    def summary(self, record: ServiceRecord) -> dict[str, Any]:
        spec = record.spec
        return {
            "name": record.name, "id": record.id, "owner": record.owner, "status": record.status,
            "generation": record.generation, "desired": record.desired,
            "ready": self.controller.ready_counts.get(record.name, 0),
            "min_replicas": spec.min_replicas, "max_replicas": spec.max_replicas,
            "autoscale": spec.autoscale.mode, "model": spec.model, "endpoint": self.endpoint(record.name),
            "message": record.message,
        }  # fmt: skip

    def status(self, record: ServiceRecord) -> dict[str, Any]:
        services = self.store.services
        latest = services.metrics(record.id, since_s=self.store.now() - 60.0)
        forecast = self.forecasts().get(f"service:{record.name}")
        spec = record.spec.to_json()
        # As for jobs (whose API never shows env): values may be secrets, and viewers read every service.
        spec["env"] = dict.fromkeys(spec["env"], "<hidden>")
        return self.summary(record) | {
            "spec": spec,
            "replicas": [r.to_json() for r in services.replicas(record.id)],
            "telemetry": latest[-1] if latest else None,
            "forecast": None
            if forecast is None
            else {
                "start_s": forecast.start_s,
                "step_s": forecast.step_s,
                "replicas_p90": list(forecast.quantiles[0.9]),
            },
            "decisions": services.decisions(record.id, limit=10),
            # what the service has held so far: each replica from its creation to its retirement
            "replica_seconds": services.replica_seconds(
                record.id, since_s=record.created_at, until_s=self.store.now()
            ),
        }


class ServiceCollector(Collector):
    """``skyline_service_*``: gateway totals since start, the last telemetry window, replica counts."""

    def __init__(self, plane: ServicePlane) -> None:
        self.plane = plane

    def collect(self) -> list[Metric]:
        totals = self.plane.gateway.totals()
        counters = {
            key: CounterMetricFamily(f"skyline_service_{key}", help, labels=["service"])
            for key, help in (
                ("requests", "Requests answered through the gateway"),
                ("errors", "Requests answered 5xx (by the gateway or a replica)"),
                ("rejected", "Requests refused 429: the service's queue was full"),
            )
        }
        gauges = {
            key: GaugeMetricFamily(f"skyline_service_{key}", help, labels=labels)
            for key, help, labels in (
                ("in_flight", "Requests in flight at the gateway", ["service"]),
                ("request_rate", "Requests per second over the last telemetry window", ["service"]),
                ("latency_ms", "Latency percentiles of the last telemetry window", ["service", "quantile"]),
                ("replicas", "Replicas ready (getting traffic) and desired", ["service", "state"]),
                ("replica_outstanding", "Requests in flight per replica (its queue)", ["service", "replica"]),
            )
        }
        for name, (requests, errors, rejected, in_flight) in totals.items():
            counters["requests"].add_metric([name], requests)
            counters["errors"].add_metric([name], errors)
            counters["rejected"].add_metric([name], rejected)
            gauges["in_flight"].add_metric([name], in_flight)
        for record in self.plane.store.services.find():
            self._record_gauges(record, gauges)
        return [*counters.values(), *gauges.values()]

    def _record_gauges(self, record: ServiceRecord, gauges: dict[str, GaugeMetricFamily]) -> None:
        name = record.name
        gauges["replicas"].add_metric([name, "ready"], self.plane.controller.ready_counts.get(name, 0))
        gauges["replicas"].add_metric([name, "desired"], record.desired)
        latest = self.plane.store.services.metrics(record.id, since_s=self.plane.store.now() - 60.0)
        if not latest:
            return
        window = latest[-1]
        gauges["request_rate"].add_metric([name], window["requests"] / max(window["window_s"], 1e-9))
        for quantile, key in (("0.5", "p50_ms"), ("0.9", "p90_ms"), ("0.99", "p99_ms")):
            if window[key] is not None:
                gauges["latency_ms"].add_metric([name, quantile], window[key])
        for replica, outstanding in window["replica_outstanding"].items():
            gauges["replica_outstanding"].add_metric([name, replica], outstanding)
