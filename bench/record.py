"""Recording benchmark results: bench/results/NAME.json, with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The load average when the benchmark process started (this module is imported first) and when a result is
# written: a figure counts only when both show a quiet machine (nothing else using the cores).
_LOAD_AT_START = os.getloadavg()


def describe_machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        mem_kib = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average_at_start": [round(x, 2) for x in _LOAD_AT_START],
        "load_average_at_record": [round(x, 2) for x in os.getloadavg()],
    }


RESULTS_DIR = Path(__file__).parent / "results"


def record(name: str, results: dict[str, Any]) -> Path:
    """Write ``{"benchmark", "machine", "results"}`` to bench/results/NAME.json and return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": describe_machine(), "results": results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
