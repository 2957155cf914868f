"""One contract, every edge collaboration strategy (`skyline.edge.strategies.EDGE_STRATEGIES`): a real edge
cloud on 127.0.0.1 behind a link proxy, a digits CNN trained here, signed and splittable, served on both
sides (so every strategy must give the local model's predictions), and a cut link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from skyline.edge.agent import AgentConfig, EdgeAgent
from skyline.edge.link import LinkProxy
from skyline.edge.local_model import LocalModel
from skyline.edge.strategies import EDGE_STRATEGIES, SOURCES
from skyline.errors import ConfigError, UnavailableError
from skyline.testing.edge import EdgeWorld, digits, edge_world, trained_digits

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeWorld, LinkProxy]]:
    served = [(trained_digits(), {"split": True})]
    with (
        edge_world(tmp_path_factory.mktemp("edge"), served=served) as built,
        LinkProxy(built.cloud.port) as link,
    ):
        yield built, link


def _agent(world: tuple[EdgeWorld, LinkProxy], strategy: str, store: Path) -> EdgeAgent:
    built, link = world
    name = f"agent-{strategy}"
    config = AgentConfig(
        cloud_url=link.url, token=built.agent_token(name), model="digits", store=store,
        public_key=built.public_key, strategy=strategy, cloud_model="digits", threshold=0.0, cloud_timeout_s=2.0,
        name=name,
    )  # fmt: skip
    return EdgeAgent(config)


@pytest.fixture(params=sorted(EDGE_STRATEGIES))
def agent(
    request: pytest.FixtureRequest, world: tuple[EdgeWorld, LinkProxy], tmp_path: Path
) -> Iterator[EdgeAgent]:
    world[1].set_outage(False)
    built = _agent(world, request.param, tmp_path / "agent")
    try:
        yield built
    finally:
        world[1].set_outage(False)
        built.stop()


def test_answers_a_batch_with_the_models_predictions(
    agent: EdgeAgent, world: tuple[EdgeWorld, LinkProxy]
) -> None:
    assert agent.refresh_model() == 1 and agent.ready
    agent.strategy.refresh()
    x = digits().test.x.numpy()[:24]
    probs, sources = agent.infer(x)
    assert probs.shape == (24, 10) and len(sources) == 24 and set(sources) <= set(SOURCES) - {"edge-degraded"}
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    expected = LocalModel(world[0].repository / "digits" / "1", 1).predict(x).argmax(axis=1)
    np.testing.assert_array_equal(probs.argmax(axis=1), expected)
    assert agent.status()["answered"] == 24


def test_a_cut_link_still_gets_answers_from_the_edge(
    agent: EdgeAgent, world: tuple[EdgeWorld, LinkProxy]
) -> None:
    assert agent.refresh_model() == 1
    if agent.config.strategy == "split":
        agent.strategy.serving.partition = 3  # a real split, whatever this host's profile chose
    world[1].set_outage(True)
    x = digits().test.x.numpy()[:8]
    probs, sources = agent.infer(x)
    assert set(sources) <= {"edge", "edge-degraded"}
    assert ("edge-degraded" in sources) == (agent.config.strategy != "local")
    assert probs.shape == (8, 10)


def test_a_batch_that_does_not_fit_is_refused_before_any_work(agent: EdgeAgent) -> None:
    agent.refresh_model()
    with pytest.raises(ConfigError, match="does not fit"):
        agent.infer(np.zeros((2, 1, 4, 4), dtype=np.float32))
    assert agent.status()["answered"] == 0 and agent.status()["errors"] == 2


def test_without_a_verified_model_only_the_cloud_can_answer(agent: EdgeAgent) -> None:
    x = digits().test.x.numpy()[:2]
    if agent.config.strategy == "cloud":
        assert agent.ready and agent.infer(x)[1] == ["cloud", "cloud"]
    else:
        assert not agent.ready
        with pytest.raises(UnavailableError, match="syncing"):
            agent.infer(x)
