"""`WallClock`: the live control plane's `Clock` (the simulator passes a simulated one)."""

from __future__ import annotations

import time


class WallClock:
    """Seconds since the Unix epoch, as the store records them."""

    def now_s(self) -> float:
        return time.time()
