"""Federated building blocks: Dirichlet splits, FedAvg arithmetic (ours and Flower's), DP accounting,
per-example clipping (record-level DP-SGD)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError
from skyline.federated.aggregate import weighted_average
from skyline.federated.apps import FederatedConfig, client_rows, record_level_epsilon
from skyline.federated.dp_sgd import RecordPrivacy, client_level_plan, plan_for, train_private
from skyline.federated.local_training import LocalTraining
from skyline.federated.partition import dirichlet_partition
from skyline.training.privacy import epsilon_for

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


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="strategy"):
        FederatedConfig(strategy="fedsgd")
    with pytest.raises(ConfigError, match="clients"):
        FederatedConfig(clients=1)
    with pytest.raises(ConfigError, match="SecAgg"):
        FederatedConfig(secagg=True, clients=2)
    with pytest.raises(ConfigError, match="dp-unit record"):
        FederatedConfig(secagg=True, dp_epsilon=5.0, dp_unit="client")
    with pytest.raises(ConfigError, match="DP unit"):
        FederatedConfig(dp_unit="user")
    both = FederatedConfig(clients=3, secagg=True, dp_epsilon=5.0)  # record level: noise before masking
    assert both.delta == 1e-5 and both.clipping == 3.0
    assert FederatedConfig(dp_unit="client").delta == 1e-3


def test_record_level_plan_counts_every_local_step_of_every_round() -> None:
    privacy = RecordPrivacy(target_epsilon=8.0, rounds=20)
    plan = plan_for(privacy, rows=117, epochs=2, batch_size=32)
    assert plan.steps == 20 * 2 * 4 and plan.sample_rate == 0.25  # ⌈117/32⌉ = 4 Poisson batches an epoch
    assert 7.9 < plan.epsilon <= 8.0  # the smallest σ within the budget spends (almost) all of it
    assert plan.epsilon == epsilon_for(
        noise_multiplier=plan.noise_multiplier, steps=160, sample_rate=0.25, delta=1e-5, accountant="rdp"
    )
    config = FederatedConfig(clients=3, rounds=20, dp_epsilon=8.0)
    spent = record_level_epsilon(config)
    assert spent is not None and 7.9 < spent <= 8.0  # the worst client, each near its own target


def test_client_level_plan_spends_the_target_with_the_server_noise() -> None:
    report = client_level_plan(target_epsilon=5.0, rounds=20, delta=1e-3, clipping_norm=1.0)
    assert report.unit == "client" and report.accountant == "rdp" and report.clipping_norm == 1.0
    assert 4.99 < report.epsilon <= 5.0  # every client every round: 20 steps at sampling rate 1
    assert report.epsilon == epsilon_for(
        noise_multiplier=report.noise_multiplier, sample_rate=1.0, steps=20, delta=1e-3, accountant="rdp"
    )


def test_dp_sgd_trains_with_fresh_noise_each_time() -> None:
    config = FederatedConfig(clients=3)
    x, y = client_rows(config, {"partition-id": 0})
    privacy = RecordPrivacy(target_epsilon=8.0, rounds=2)
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    results = []
    for _ in range(2):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        model.load_state_dict(start.state_dict())
        loss = train_private(model, x, y, LocalTraining(proximal_mu=0.01), privacy)
        assert math.isfinite(loss)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(results[0], torch.cat([p.flatten() for p in start.parameters()]))
    # Same start, same data, same settings: only the noise differs, and it must (a noise stream anyone
    # could regenerate from the run's seed would protect nothing).
    assert not torch.equal(results[0], results[1])


def test_client_level_dp_wraps_the_strategy_and_clips_on_the_clients() -> None:
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg

    from skyline.federated.apps import _strategy

    client_level = FederatedConfig(dp_epsilon=8.0, dp_unit="client")
    assert isinstance(_strategy(client_level, 1.5), DifferentialPrivacyClientSideFixedClipping)
    assert record_level_epsilon(client_level) is None  # its ε is the server's, not the clients'
    assert type(_strategy(FederatedConfig(dp_epsilon=8.0), None)) is FedAvg  # record level: noise on clients


def test_the_deployment_run_config_carries_every_training_setting() -> None:
    from skyline.federated.run_config import config_from_run, run_config_of

    tuned = FederatedConfig(
        clients=3,
        rounds=2,
        strategy="fedprox",
        proximal_mu=0.1,
        local=LocalTraining(epochs=2, batch_size=16, lr=0.01, momentum=0.5),
        dp_epsilon=5.0,
        dp_delta=1e-6,
        clipping_norm=2.0,
        seed=7,
    )
    # the run config travels as TOML written from JSON values (`skyline.federated.loopback`)
    assert config_from_run(json.loads(json.dumps(run_config_of(tuned)))) == tuned
    plain = FederatedConfig(clients=2)
    assert config_from_run(run_config_of(plain)) == plain


def test_a_fleet_run_config_carries_the_shape_data_and_weights(tmp_path: Path) -> None:
    from skyline.federated.deployment import COMPONENTS
    from skyline.federated.run_config import config_from_run, run_config_of

    fleet = FederatedConfig(
        clients=3, rounds=2, model="mlp", input_shape=(1, 8, 8), num_classes=10, secagg=True,
        eval_data=tmp_path / "eval", initial_weights=tmp_path / "weights.pt", dp_epsilon=8.0,
    )  # fmt: skip
    assert config_from_run(json.loads(json.dumps(run_config_of(fleet)))) == fleet
    assert COMPONENTS[fleet.secagg][1].endswith(":secagg_client_app")
    with pytest.raises(ConfigError, match="input_shape and num_classes"):
        FederatedConfig(input_shape=(4,))


def test_a_node_trains_on_the_rows_of_its_own_folder(tmp_path: Path) -> None:
    from skyline.federated.data_folder import read_rows, write_rows

    write_rows(tmp_path / "data", np.ones((3, 4)), [0, 1, 1])
    write_rows(tmp_path / "data", np.zeros((2, 4)), [2, 2])
    x, y = client_rows(FederatedConfig(), {"data-path": str(tmp_path / "data")})
    assert tuple(x.shape) == (5, 4) and sorted(y.tolist()) == [0, 1, 1, 2, 2]
    (tmp_path / "data" / "torn.npz").write_bytes(b"PK\x03\x04 half a file")  # skipped, the rest still read
    assert len(read_rows(tmp_path / "data")[1]) == 5
    first, second = (write_rows(tmp_path / "same", np.ones((1, 4)), [0]) for _ in range(2))
    assert first != second  # two writers in one instant never overwrite each other
    write_rows(tmp_path / "data", np.zeros((1, 5)), [0])
    with pytest.raises(ConfigError, match="disagree on the input shape"):
        read_rows(tmp_path / "data")
