"""One small federated run in Flower's simulation engine (Ray): 3 clients × 2 rounds, FedProx + DP."""

from __future__ import annotations

import pytest

from skyline.federated.apps import FederatedConfig
from skyline.federated.simulation import run_federated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_three_clients_two_rounds_learn_and_report_epsilon() -> None:
    config = FederatedConfig(
        clients=3, rounds=2, alpha=0.5, strategy="fedprox", dp_epsilon=50.0, clipping_norm=5.0
    )
    result = run_federated(config, quiet=True)
    assert set(result) == {
        "rounds",
        "final_accuracy",
        "centralized_accuracy",
        "accuracy_per_round",
        "epsilon",
    }
    assert result["rounds"] == 2 and len(result["accuracy_per_round"]) == 2
    assert result["final_accuracy"] > 0.3  # from 0.1 (chance) after two rounds, even with noise
    assert 0 < result["epsilon"] <= 50.0
    assert result["centralized_accuracy"] > 0.8
