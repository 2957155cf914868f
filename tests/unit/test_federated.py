"""Federated building blocks: Dirichlet splits, FedAvg arithmetic (ours and Flower's), DP accounting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError
from skyline.federated.aggregate import weighted_average
from skyline.federated.apps import FederatedConfig
from skyline.federated.partition import dirichlet_partition
from skyline.federated.privacy import epsilon_for, noise_for_epsilon

pytestmark = pytest.mark.unit


def test_weighted_average_by_hand() -> None:
    a = [np.array([1.0, 2.0]), np.array([[0.0]])]
    b = [np.array([4.0, 8.0]), np.array([[3.0]])]
    # weights 1 and 2: (1·1 + 2·4)/3 = 3, (1·2 + 2·8)/3 = 6, (0 + 2·3)/3 = 2
    averaged = weighted_average([(a, 1), (b, 2)])
    np.testing.assert_allclose(averaged[0], [3.0, 6.0])
    np.testing.assert_allclose(averaged[1], [[2.0]])
    with pytest.raises(ConfigError):
        weighted_average([])


def test_flowers_fedavg_aggregation_equals_the_hand_computed_average() -> None:
    from flwr.app import ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    replies = [
        RecordDict(
            {"arrays": ArrayRecord([np.array([1.0, 2.0])]), "metrics": MetricRecord({"num-examples": 1})}
        ),
        RecordDict(
            {"arrays": ArrayRecord([np.array([4.0, 8.0])]), "metrics": MetricRecord({"num-examples": 2})}
        ),
    ]
    aggregated = aggregate_arrayrecords(replies, "num-examples").to_numpy_ndarrays()
    np.testing.assert_allclose(aggregated[0], [3.0, 6.0])


@settings(max_examples=40, deadline=None)
@given(clients=st.integers(2, 10), alpha=st.sampled_from([0.1, 0.5, 1.0, 100.0]), seed=st.integers(0, 1000))
def test_dirichlet_partition_is_a_partition(clients: int, alpha: float, seed: int) -> None:
    labels = np.repeat(np.arange(10), 30)
    parts = dirichlet_partition(labels, clients=clients, alpha=alpha, seed=seed)
    joined = np.concatenate(parts)
    assert len(parts) == clients and min(len(p) for p in parts) >= 2
    assert sorted(joined.tolist()) == list(range(len(labels)))  # every row exactly once
    again = dirichlet_partition(labels, clients=clients, alpha=alpha, seed=seed)
    assert all(np.array_equal(p, q) for p, q in zip(parts, again, strict=True))


def test_small_alpha_is_more_skewed_than_large_alpha() -> None:
    labels = np.repeat(np.arange(10), 100)

    def classes_per_client(alpha: float) -> float:
        parts = dirichlet_partition(labels, clients=10, alpha=alpha, seed=3)
        return float(np.mean([np.sum(np.bincount(labels[p], minlength=10) >= 10) for p in parts]))

    assert classes_per_client(0.1) < classes_per_client(100.0)


def test_epsilon_falls_as_noise_grows_and_the_search_hits_the_target() -> None:
    loose = epsilon_for(noise_multiplier=0.8, rounds=20, sample_rate=1.0, delta=1e-3)
    tight = epsilon_for(noise_multiplier=2.0, rounds=20, sample_rate=1.0, delta=1e-3)
    assert tight < loose
    sigma = noise_for_epsilon(target_epsilon=5.0, rounds=20, sample_rate=1.0, delta=1e-3)
    assert epsilon_for(noise_multiplier=sigma, rounds=20, sample_rate=1.0, delta=1e-3) <= 5.0 + 1e-6


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="strategy"):
        FederatedConfig(strategy="fedsgd")
    with pytest.raises(ConfigError, match="clients"):
        FederatedConfig(clients=1)
    with pytest.raises(ConfigError, match="SecAgg"):
        FederatedConfig(secagg=True, clients=2)
    with pytest.raises(ConfigError, match="choose one"):
        FederatedConfig(secagg=True, dp_epsilon=5.0)
