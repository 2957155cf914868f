"""Split inference of a model trained here, packed splittable and signed: every cut answers exactly as the
unsplit model on the whole test set (edge head here, cloud tail over real HTTP); a tampered split artifact
is refused by the cloud and by the agent; the agent's split strategy answers and falls back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from skyline.edge.cloud_client import CloudClient
from skyline.edge.local_model import LocalModel
from skyline.edge.split import SplitModel, encode_activation
from skyline.errors import UnavailableError
from skyline.testing.edge import EdgeWorld, digits, edge_world, trained_digits

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[EdgeWorld]:
    with edge_world(tmp_path) as built:
        built.publish(trained_digits(), version=1, split=True, architecture="cnn")
        yield built


def test_every_cut_answers_as_the_unsplit_model_on_the_test_set(world: EdgeWorld) -> None:
    folder = world.repository / "digits" / "1"
    x, y = digits().test.x.numpy(), digits().test.y.numpy()
    whole = LocalModel(folder, 1).predict(x)
    assert (whole.argmax(axis=1) == y).mean() > 0.9  # a trained network, not a random one
    model = SplitModel(folder)
    client = CloudClient(world.cloud.url, token=world.token, timeout_s=30)
    try:
        assert len(client.split_profile("digits", 1)) == len(model) >= 4
        for cut in range(len(model)):
            sent = encode_activation(model.run(0, cut, x), int8=False)
            probs = client.split_tail("digits", 1, cut, sent.payload, sent.headers)
            np.testing.assert_array_equal(probs.argmax(axis=1), whole.argmax(axis=1))
            np.testing.assert_allclose(probs, whole, atol=1e-5)
    finally:
        client.close()
        model.close()


def test_a_tampered_split_artifact_is_refused_by_cloud_and_agent(world: EdgeWorld) -> None:
    folder = world.publish(trained_digits(seed=1), version=2, split=True)
    segment = folder / "split" / "segment-01.onnx"
    segment.write_bytes(segment.read_bytes()[:-8] + b"tampered")
    client = CloudClient(world.cloud.url, token=world.token, timeout_s=30)
    try:
        with pytest.raises(UnavailableError, match=r"400.*does not match its signed manifest"):
            client.split_profile("digits", 2)
    finally:
        client.close()
    agent = world.agent(strategy="split")
    try:
        assert agent.refresh_model() is None
        assert agent.model_version is None and agent.sync.counts.refused == 1
        assert not (world.folder / "agents" / "edge-agent" / "models" / "digits" / "2").exists()
    finally:
        agent.stop()


def test_the_agent_splits_with_the_cloud_and_falls_back_to_the_edge(world: EdgeWorld) -> None:
    agent = world.agent(strategy="split")
    x = digits().test.x.numpy()[:20]
    try:
        assert agent.refresh_model() == 1
        status = agent.status()
        assert status["split_link"] == "up" and status["split_bandwidth_mbps"] > 0
        expected = LocalModel(world.repository / "digits" / "1", 1).predict(x).argmax(axis=1)
        serving = agent.strategy.serving
        for cut in (0, 3, len(serving.model)):  # cloud-only, a split, edge-only
            serving.partition = cut
            probs, sources = agent.infer(x)
            assert sources[0] == {0: "cloud", len(serving.model): "edge"}.get(cut, "split")
            np.testing.assert_array_equal(probs.argmax(axis=1), expected)
        serving.partition, serving.cloud = 3, CloudClient("http://127.0.0.1:9", token="t", timeout_s=0.5)
        probs, sources = agent.infer(x)  # the cloud is gone: the rest of the network runs here
        assert set(sources) == {"edge-degraded"}
        np.testing.assert_array_equal(probs.argmax(axis=1), expected)
    finally:
        agent.stop()
