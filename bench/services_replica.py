"""A service replica of fixed capacity for the services benchmark: skyline serve's OIP app over a model
repository, answering one inference at a time, each holding the replica for ``--service-ms``.

On this 2-core machine ten replicas share two cores, so capacity would follow core contention, not the
replica count. Here the real inference (the MLP through skyline serve's app: parsing, batching, ONNX
Runtime, encoding) runs and the replica then stays busy until ``--service-ms`` has passed since it took
the request, as an accelerator-bound model would (diffusion, an LLM on a GPU): capacity is exactly
1000 / service-ms requests per second per replica, whatever the other replicas do.

    python bench/services_replica.py --repo REPO --port $PORT --service-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")


class Paced:
    """ASGI middleware: inference calls one at a time, each taking at least ``service_s``."""

    def __init__(self, app: Any, service_s: float) -> None:
        self.app, self.service_s = app, service_s
        self._busy: asyncio.Lock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/infer"):
            await self.app(scope, receive, send)
            return
        if self._busy is None:
            self._busy = asyncio.Lock()
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        async with self._busy:
            started = time.perf_counter()
            await self.app(scope, receive, hold)
            rest = self.service_s - (time.perf_counter() - started)
            if rest > 0:
                await asyncio.sleep(rest)
        for message in held:
            await send(message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service-ms", type=float, required=True)
    args = parser.parse_args()
    import uvicorn

    from skyline.serving.app import create_app

    app = Paced(create_app(args.repo, cores=1), args.service_ms / 1000.0)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", ws="none",
                log_level="warning", access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
