"""Labelled traffic for a fleet of in-process agents: each agent answers a few labelled rows (its users'
feedback, `EdgeAgent.label`) and a few unlabelled ones (`EdgeAgent.infer`) in turn, until stopped — what a
rollout watches, in the demo and the rollout benchmark."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType

import numpy as np
import numpy.typing as npt

from skyline.edge.agent import EdgeAgent
from skyline.errors import SkylineError


class LabelledTraffic:
    """``with LabelledTraffic(agents, x, y): ...`` drives every agent from a background thread."""

    def __init__(
        self,
        agents: Sequence[EdgeAgent],
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64],
        *,
        rows: int = 8,
        pause_s: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.agents, self.x, self.y, self.rows, self.pause_s = list(agents), x, y, rows, pause_s
        self.versions_served: dict[str, set[int]] = {}  # agent → every version it answered with
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelled-traffic", daemon=True)

    def _round(self, agent: EdgeAgent) -> None:
        rows = self._rng.choice(len(self.y), size=self.rows, replace=False)
        try:
            agent.label(self.x[rows], self.y[rows])
            agent.infer(self.x[rows])
        except SkylineError:  # syncing, or stopped: this agent sits this round out
            return
        if agent.model_version is not None:
            self.versions_served.setdefault(agent.config.name, set()).add(agent.model_version)

    def _run(self) -> None:
        while not self._stop.is_set():
            for agent in list(self.agents):
                self._round(agent)
            time.sleep(self.pause_s)

    def __enter__(self) -> LabelledTraffic:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
