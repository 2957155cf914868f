"""One contract, every federated strategy (`skyline.federated.strategies.FEDERATED_STRATEGIES`), in both of
Flower's APIs: the aggregate of client updates is the example-weighted average computed by hand
(`skyline.federated.aggregate`), and whatever the clients must add to their loss travels in each round's
train configuration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from skyline.federated.aggregate import weighted_average
from skyline.federated.apps import FederatedConfig
from skyline.federated.strategies import FEDERATED_STRATEGIES

pytestmark = pytest.mark.unit
UPDATES = [([np.array([1.0, 2.0]), np.array([[0.0]])], 1), ([np.array([4.0, 8.0]), np.array([[3.0]])], 2)]


@pytest.fixture
def in_a_run() -> Iterator[None]:
    """Flower builds messages only inside a run: give this test the identity a ServerApp process has."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)  # type: ignore[attr-defined]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved  # type: ignore[attr-defined]


class _Grid:
    def get_node_ids(self) -> list[int]:
        return [11, 12]


def _replies() -> list[Any]:
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

    asked = Message(content=RecordDict({"config": ConfigRecord({})}), dst_node_id=11, message_type="train")
    return [
        Message(
            content=RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": n})}),
            reply_to=asked,
        )
        for arrays, n in UPDATES
    ]


@pytest.mark.parametrize("name", sorted(FEDERATED_STRATEGIES))
def test_message_api_aggregates_the_weighted_average(name: str, in_a_run: None) -> None:
    config = FederatedConfig(strategy=name, clients=2)
    strategy = FEDERATED_STRATEGIES[name].message(config, {"min_train_nodes": 2, "min_available_nodes": 2})
    arrays, _ = strategy.aggregate_train(1, _replies())
    for got, want in zip(arrays.to_numpy_ndarrays(), weighted_average(UPDATES), strict=True):
        np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("name", sorted(FEDERATED_STRATEGIES))
def test_legacy_api_aggregates_the_weighted_average(name: str) -> None:
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    config = FederatedConfig(strategy=name, clients=2)
    strategy = FEDERATED_STRATEGIES[name].legacy(config, {"min_fit_clients": 2, "min_available_clients": 2})
    results = [
        (
            None,
            FitRes(
                status=Status(Code.OK, ""), parameters=ndarrays_to_parameters(a), num_examples=n, metrics={}
            ),
        )
        for a, n in UPDATES
    ]
    parameters, _ = strategy.aggregate_fit(1, results, [])
    for got, want in zip(parameters_to_ndarrays(parameters), weighted_average(UPDATES), strict=True):
        np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("name", sorted(FEDERATED_STRATEGIES))
def test_the_clients_learn_their_proximal_term_from_the_round(name: str, in_a_run: None) -> None:
    from flwr.app import ArrayRecord, ConfigRecord

    config = FederatedConfig(strategy=name, clients=2, proximal_mu=0.3)
    strategy = FEDERATED_STRATEGIES[name].message(config, {"min_train_nodes": 2, "min_available_nodes": 2})
    (first, *_) = strategy.configure_train(1, ArrayRecord([np.zeros(1)]), ConfigRecord({}), _Grid())
    sent = dict(first.content["config"])
    assert sent.get("proximal-mu", 0.0) == (0.3 if name == "fedprox" else 0.0)
