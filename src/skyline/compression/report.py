"""The comparison people read: report.json, table rows, the Pareto plot, and the accuracy gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyline.compression.measure import Measurement
from skyline.errors import SkylineError


class MetricDropError(SkylineError):
    """A variant lost more of the task metric than ``--max-metric-drop`` allows (CLI exit code 2)."""

    http_status = 422


@dataclass(frozen=True, slots=True, kw_only=True)
class CompressionReport:
    """Everything one `skyline compress` run measured."""

    model: str
    threads: int
    metric_name: str
    measurements: Mapping[str, Measurement]
    notes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """``{"model", "threads", "variants": {name: {size_bytes, params, latency_p50_ms, ...}}}``."""
        return {
            "model": self.model,
            "threads": self.threads,
            "variants": {name: m.report_row() for name, m in self.measurements.items()},
        }

    def table_rows(self) -> list[list[str]]:
        """One row per variant, ratios relative to fp32 (speed-up at batch 1, size reduction)."""
        base = self.measurements["fp32"]
        rows = []
        for name, m in self.measurements.items():
            rows.append(
                [
                    name,
                    f"{m.size_bytes / 1e6:.3f}",
                    f"{base.size_bytes / m.size_bytes:.1f}×",
                    f"{m.params:,}",
                    f"{m.latency_p50_ms:.3f}",
                    f"{m.latency_p99_ms:.3f}",
                    f"{base.latency_p50_ms / m.latency_p50_ms:.2f}×",
                    f"{m.throughput_per_s:,.0f} (b{m.best_batch})",
                    f"{m.metric:.2f}",
                    f"{m.metric_delta:+.2f}",
                ]
            )
        return rows

    table_header = (
        "variant",
        "size MB",
        "smaller",
        "params",
        "p50 ms",
        "p99 ms",
        "faster",
        "throughput/s",
        "metric",
        "Δ",
    )


def gate_failures(measurements: Mapping[str, Measurement], max_metric_drop: float) -> dict[str, float]:
    """Variants whose metric fell by more than ``max_metric_drop`` (same units as the metric): name → drop."""
    return {
        name: -m.metric_delta
        for name, m in measurements.items()
        if name != "fp32" and -m.metric_delta > max_metric_drop
    }


def refuse_drops(report: CompressionReport, max_metric_drop: float | None, variants: Path) -> None:
    """Raise `MetricDropError` naming every variant that lost more than ``max_metric_drop`` (None: no gate)."""
    failures = {} if max_metric_drop is None else gate_failures(report.measurements, max_metric_drop)
    if not failures:
        return
    base = report.measurements["fp32"].metric
    detail = "; ".join(
        f"{name}: {base:.2f} → {report.measurements[name].metric:.2f} (−{drop:.2f})"
        for name, drop in failures.items()
    )
    raise MetricDropError(
        f"{len(failures)} variant(s) lose more than --max-metric-drop {max_metric_drop} of {report.metric_name}: "
        f"{detail}; their files were removed from {variants}"
    )


def _pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower latency and higher metric."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_metric = [], float("-inf")
    for i in order:
        if points[i][1] > best_metric:
            front.append(i)
            best_metric = points[i][1]
    return front


def plot_pareto(report: CompressionReport, path: Path) -> Path:
    """Latency p50 (log x) vs metric, marker area ∝ size on disk, the Pareto front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.measurements)
    rows = [report.measurements[n] for n in names]
    largest = max(m.size_bytes for m in rows)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, m in zip(names, rows, strict=True):
        axes.scatter(m.latency_p50_ms, m.metric, s=40 + 900 * m.size_bytes / largest, alpha=0.6)
        axes.annotate(f"{name}\n{m.size_bytes / 1e6:.2f} MB", (m.latency_p50_ms, m.metric), fontsize=8)
    front = _pareto_front([(m.latency_p50_ms, m.metric) for m in rows])
    axes.plot([rows[i].latency_p50_ms for i in front], [rows[i].metric for i in front], "k--", lw=1)
    axes.set_xscale("log")
    axes.set_xlabel(f"latency p50 at batch 1, ms (log; {report.threads} thread(s))")
    axes.set_ylabel(report.metric_name)
    axes.set_title(f"{report.model}: latency vs {report.metric_name} (marker size = size on disk)")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
