"""Per-job-type speed on each GPU model, from Gavel's ``simulation_throughputs.json``.

The file maps ``worker_type → "('<job type>', <scale factor>)" → {"null": steps/s alone, ...}``. A job's
speed on a model is its isolated throughput there divided by its best one (so 1.0 on the fastest model):
a trace's duration is read as the time on the fastest GPU.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from skyline.errors import DataError


def read_gavel_throughputs(path: Path) -> dict[str, dict[str, float]]:
    """``speed[job_type][gpu_type]`` in (0, 1], for one-GPU (scale factor 1) isolated runs."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"cannot read Gavel throughputs {path}: {exc}; pass simulation_throughputs.json"
        ) from exc
    absolute: dict[str, dict[str, float]] = {}
    for worker, table in raw.items():
        if "unconsolidated" in worker or not isinstance(table, dict):
            continue
        for key, entry in table.items():
            try:
                job_type, scale = ast.literal_eval(key)
            except (ValueError, SyntaxError):
                raise DataError(
                    f"{path}: key {key!r} under {worker!r} is not ('<job type>', <scale>)"
                ) from None
            if scale == 1 and isinstance(entry, dict) and entry.get("null"):
                absolute.setdefault(str(job_type), {})[worker] = float(entry["null"])
    if not absolute:
        raise DataError(f"{path}: no isolated one-GPU throughputs found")
    return {
        job: {gpu: value / max(speeds.values()) for gpu, value in speeds.items()}
        for job, speeds in absolute.items()
    }
