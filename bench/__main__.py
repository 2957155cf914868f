"""`python -m bench [NAME ...]`: run the benchmarks (all, or those named) and record their results."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    available = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    names = [n for n in argv if not n.startswith("-")]  # flags (--quick) are read by the benchmarks
    chosen = [f"bench_{n.removeprefix('bench_')}" for n in names] or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(
            f"error: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(available)}", file=sys.stderr
        )
        return 2
    for name in chosen:
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
