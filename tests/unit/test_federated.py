"""Federated building blocks: Dirichlet splits, FedAvg arithmetic (ours and Flower's), DP accounting,
per-example clipping (record-level DP-SGD)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError
from skyline.federated.aggregate import weighted_average
from skyline.federated.apps import FederatedConfig, client_rows, record_level_epsilon
from skyline.federated.dp_sgd import RecordPrivacy, plan_for, private_optimizer, train_private
from skyline.federated.local_training import LocalTraining
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
    with pytest.raises(ConfigError, match="dp-unit record"):
        FederatedConfig(secagg=True, dp_epsilon=5.0, dp_unit="client")
    with pytest.raises(ConfigError, match="DP unit"):
        FederatedConfig(dp_unit="user")
    both = FederatedConfig(clients=3, secagg=True, dp_epsilon=5.0)  # record level: noise before masking
    assert both.delta == 1e-5 and both.clipping == 3.0
    assert FederatedConfig(dp_unit="client").delta == 1e-3


def test_epsilon_equals_the_closed_form_of_the_gaussian_mechanism() -> None:
    # Without subsampling (q = 1) each round is a Gaussian mechanism of sensitivity C and noise σ·C:
    # Rényi DP of order a is a/(2σ²) per round, T·a/(2σ²) after T rounds (Mironov 2017). Opacus turns it
    # into (ε, δ) with ε = min_a [rdp(a) + log((a−1)/a) − (log δ + log a)/(a − 1)] (Balle et al. 2020)
    # over its grid of orders. For σ = 2, T = 20, δ = 1e-3: a = 2 gives 5 − 0.693 + 6.215 = 10.52, a = 2.5
    # gives 6.25 − 0.511 + 3.994 = 9.733, a = 3 gives 7.5 − 0.405 + 2.905 = 10.00; the minimum is at 2.5.
    sigma, rounds, delta = 2.0, 20, 1e-3
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
    by_hand = np.min(
        rounds * orders / (2 * sigma**2)
        + np.log((orders - 1) / orders)
        - (math.log(delta) + np.log(orders)) / (orders - 1)
    )
    assert by_hand == pytest.approx(9.733, abs=1e-3)
    assert epsilon_for(noise_multiplier=sigma, rounds=rounds, sample_rate=1.0, delta=delta) == pytest.approx(
        by_hand, rel=1e-9
    )


def test_record_level_plan_counts_every_local_step_of_every_round() -> None:
    privacy = RecordPrivacy(target_epsilon=8.0, rounds=20)
    plan = plan_for(privacy, rows=117, epochs=2, batch_size=32)
    assert plan.steps == 20 * 2 * 4 and plan.sample_rate == 0.25  # ⌈117/32⌉ = 4 Poisson batches an epoch
    assert 7.9 < plan.epsilon <= 8.0  # the smallest σ within the budget spends (almost) all of it
    assert plan.epsilon == epsilon_for(
        noise_multiplier=plan.noise_multiplier, rounds=160, sample_rate=0.25, delta=1e-5
    )
    config = FederatedConfig(clients=3, rounds=20, dp_epsilon=8.0)
    spent = record_level_epsilon(config)
    assert spent is not None and 7.9 < spent <= 8.0  # the worst client, each near its own target


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(2, 12),
    clipping_norm=st.sampled_from([0.01, 0.5, 3.0]),
    scale=st.sampled_from([0.1, 10.0, 1000.0]),
    seed=st.integers(0, 10_000),
)
def test_one_example_moves_the_clipped_gradient_sum_by_at_most_c(
    rows: int, clipping_norm: float, scale: float, seed: int
) -> None:
    """Sensitivity, the fact the Gaussian noise is calibrated to: adding one example to a batch changes
    the sum of clipped per-example gradients by at most C, however large its raw gradient."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 6, generator=generator) * scale
    y = torch.randint(0, 3, (rows,), generator=generator)

    def clipped_sum(count: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
        wrapped, optimizer = private_optimizer(
            model, LocalTraining(), clipping_norm=clipping_norm, noise_multiplier=0.0, expected_batch_size=1
        )
        # mean reduction, as in training: Opacus rescales it to per-example gradients
        torch.nn.functional.cross_entropy(wrapped(x[:count]), y[:count]).backward()
        optimizer.clip_and_accumulate()
        summed = torch.cat([p.summed_grad.flatten() for p in model.parameters()])
        wrapped.remove_hooks()
        return summed

    with_all, without_last = clipped_sum(rows), clipped_sum(rows - 1)
    assert float(torch.linalg.vector_norm(with_all - without_last)) <= clipping_norm * (1 + 1e-4)
    assert float(torch.linalg.vector_norm(with_all)) <= rows * clipping_norm * (1 + 1e-4)


def test_dp_sgd_trains_with_fresh_noise_each_time() -> None:
    config = FederatedConfig(clients=3)
    x, y = client_rows(config, 0)
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
    from skyline.federated.deployment import config_from_run, run_config_of

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
