"""The control plane's throughput on this machine's code beside an older commit's, in one interleaved run.

    python -m bench.cluster_vs_code REV [ROUNDS]

REV is checked out into a temporary git worktree. Each round is bench cluster's skyline round (a `skyline
cluster up` process, 100 simulated agents, a 1,000-job burst; see `bench.bench_cluster`) in a process of its
own, with ``PYTHONPATH`` on one tree: REV's or this one's, so each round runs that code's server, agents and
load. Rounds are interleaved (old, new, new, old, ...) and medians compared: what a figure recorded on an
older day would be today, on the same machine, and what the code changed. Recorded as
``cluster-code-<REV's commit date>``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.record import record

HERE = Path(__file__).resolve().parents[1]
KEYS = (
    "submit_throughput_jobs_per_s",
    "server_cpu_ms_per_job",
    "submit_to_placed_p50_ms",
    "submit_to_placed_p99_ms",
)
_ROUND = (
    "import json, os; from bench import bench_cluster as bc; out = bc.skyline_round(); out.pop('jobs', None); "
    "print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}))"
)


def _round(tree: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}:{tree}", "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, "-c", _ROUND],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result | {"load_average_1min": round(load, 2)}


def main(rev: str, rounds: int = 3) -> None:
    day = subprocess.run(["git", "show", "-s", "--format=%cs", rev], cwd=HERE, capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), rev], cwd=HERE, check=True,
                       capture_output=True)  # fmt: skip
        try:
            names = {f"{day} ({rev})": old_tree, f"today ({head})": HERE}
            old, new = names
            order = [old, new, new, old] * ((rounds + 1) // 2)
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for name in order[: 2 * rounds]:
                results[name].append(_round(names[name]))
                print(name, results[name][-1], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=HERE, check=False)
    median = {name: {k: statistics.median(r[k] for r in rs) for k in KEYS} for name, rs in results.items()}
    summary = {
        "setup": {"rounds_per_code": rounds, "note": "bench cluster's skyline round for each code, in its own "
                  "process with PYTHONPATH on that code's tree, interleaved old, new, new, old, ...; medians"},
        "rounds": results,
        "median": median,
        "ratios_today_over_old": {k: median[new][k] / median[old][k] for k in KEYS},
    }  # fmt: skip
    print(json.dumps({k: summary[k] for k in ("median", "ratios_today_over_old")}, indent=1))
    print(record(f"cluster-code-{day}", summary))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m bench.cluster_vs_code REV [ROUNDS]", file=sys.stderr)
        raise SystemExit(2)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
