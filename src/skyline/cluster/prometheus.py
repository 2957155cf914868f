"""The Prometheus exposition of the control plane's state (text format 0.0.4)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from skyline.cluster.store import Store


class _StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> list[GaugeMetricFamily]:
        cpu = GaugeMetricFamily("skyline_node_cpu_percent", "CPU utilization of the node", labels=["node"])
        mem = GaugeMetricFamily("skyline_node_memory_percent", "Memory utilization", labels=["node"])
        gpu = GaugeMetricFamily("skyline_node_gpu_percent", "GPU utilization (NVML)", labels=["node"])
        alive = GaugeMetricFamily(
            "skyline_node_alive", "1 when the node heartbeats, 0 when lost", labels=["node"]
        )
        jobs = GaugeMetricFamily("skyline_jobs", "Jobs by status", labels=["status"])
        for node in self.store.nodes.find():
            alive.add_metric([node.id], 1.0 if node.status == "alive" else 0.0)
        for node_id, sample in self.store.nodes.latest_metrics().items():
            cpu.add_metric([node_id], sample["cpu_percent"])
            mem.add_metric([node_id], sample["memory_percent"])
            if sample["gpu_percent"] is not None:
                gpu.add_metric([node_id], sample["gpu_percent"])
        counts = self.store.jobs.count_by_status()
        for status in ("pending", "placed", "running", "succeeded", "failed", "cancelled"):
            jobs.add_metric([status], float(counts.get(status, 0)))
        return [cpu, mem, gpu, alive, jobs]


def render_metrics(store: Store, extra: Sequence[Collector] = ()) -> str:
    """The store's families and ``extra`` collectors' (the services', when the control plane runs them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(store))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry).decode()
