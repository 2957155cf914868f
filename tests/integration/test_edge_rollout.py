"""Staged rollouts on a fleet of real agents (in this process) and a real edge cloud on 127.0.0.1: a version
made worse on purpose stops at the canary and every canary agent goes back to the previous version, while
no other agent ever gets it; a good version reaches every agent, one that was offline during the rollout
included once it returns; a new version never reaches agents without a rollout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from skyline.edge.agent import EdgeAgent
from skyline.edge.rollout import RolloutSpec
from skyline.testing.edge import EdgeWorld, digits, edge_world, trained_digits

pytestmark = pytest.mark.integration
AGENTS = 10


class Traffic:
    """Every agent answers labelled digits (its users' feedback) until stopped."""

    def __init__(self, agents: list[EdgeAgent]) -> None:
        self.agents, self._stop = agents, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        x, y = digits().test.x.numpy(), digits().test.y.numpy()
        rng = np.random.default_rng(0)
        while not self._stop.is_set():
            for agent in list(self.agents):
                rows = rng.choice(len(y), size=8, replace=False)
                try:
                    agent.label(x[rows], y[rows])
                    agent.infer(x[rows])
                except Exception:  # an agent being stopped or syncing: skip this round
                    continue
            time.sleep(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _start(world: EdgeWorld, name: str) -> EdgeAgent:
    site = "north" if int(name.rsplit("-", 1)[1]) % 2 else "south"
    return world.agent(name, poll_s=0.2, telemetry_s=0.2, labels={"site": site}).start()


def _wait(condition: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[EdgeWorld, list[EdgeAgent]]]:
    with edge_world(tmp_path, tick_s=0.2, served=[(trained_digits(), {})]) as world:
        agents = [_start(world, f"agent-{i:02d}") for i in range(AGENTS)]
        try:
            _wait(lambda: all(a.model_version == 1 for a in agents))
            yield world, agents
        finally:
            for agent in agents:
                agent.stop()


def _rollout(world: EdgeWorld, version: int) -> int:
    spec = RolloutSpec(
        model="digits", version=version, canary=0.1, steps=(0.1, 0.5, 1.0), min_accuracy=0.8, min_samples=16,
        bake_s=1.0, wave_timeout_s=60.0, offline_after_s=3.0,
    )  # fmt: skip
    return world.cloud.controller.create(spec, [1, 2, 3][:version]).id


def test_a_worse_version_stops_at_the_canary_and_goes_back(fleet: tuple[EdgeWorld, list[EdgeAgent]]) -> None:
    world, agents = fleet
    world.publish(trained_digits(shuffled=True), version=2)  # near-chance accuracy on labelled records
    time.sleep(1.0)
    assert all(a.model_version == 1 for a in agents)  # published is not deployed
    with Traffic(agents):
        rollout_id = _rollout(world, 2)
        _wait(lambda: world.cloud.fleet.rollout(rollout_id).state != "running")
        record = world.cloud.fleet.rollout(rollout_id)
        assert record.state == "rolled-back" and "wave 1 (1 agent(s)) regressed: accuracy" in record.reason
        _wait(lambda: all(a.model_version == 1 for a in agents))
    received = [a.config.name for a in agents if (a.config.store / "models" / "digits" / "2").exists()]
    assert received == ["agent-00"]  # the canary only; it is back on version 1 (above)
    assert world.cloud.fleet.rejected("digits") == {2}


def test_a_good_version_reaches_every_agent_and_a_returning_one(
    fleet: tuple[EdgeWorld, list[EdgeAgent]],
) -> None:
    world, agents = fleet
    offline = agents.pop()
    offline.stop()  # away during the whole rollout: seen offline (3 s without a report) before it starts
    name = offline.config.name
    _wait(lambda: time.time() - next(a.last_seen for a in world.cloud.fleet.agents() if a.name == name) > 3.5)
    world.publish(trained_digits(seed=1), version=2)
    with Traffic(agents):
        rollout_id = _rollout(world, 2)
        _wait(lambda: world.cloud.fleet.rollout(rollout_id).state != "running", timeout_s=90)
        record = world.cloud.fleet.rollout(rollout_id)
        assert record.state == "succeeded", record.events
        waves = record.events[:3]  # the offline agent counts in the fleet but is given nothing
        assert "1 of 10" in waves[0] and "5 of 10" in waves[1] and "9 of 10" in waves[2], record.events
        assert record.reason.endswith("version 2 is the fleet's")
        _wait(lambda: all(a.model_version == 2 for a in agents))
    returned = _start(world, offline.config.name)
    agents.append(returned)
    _wait(lambda: returned.model_version == 2)
    assert world.cloud.fleet.pinned("digits") == 2
