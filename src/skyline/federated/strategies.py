"""Federated strategies: one interface, one registry, one contract suite (tests/contract).

A `FederatedStrategy` builds Flower's server strategy in both of Flower's APIs: the message API
(``flwr.serverapp.strategy``: the apps of `skyline.federated.apps`) and the legacy workflow API
(``flwr.server.strategy``: SecAgg+ runs only there). Each builder takes the run's settings (a
`FederatedConfig`, read through `StrategySettings`) and the keyword arguments of that API that every strategy
shares (fractions, node counts, evaluation); the strategy adds its own (FedProx's μ, which Flower sends to
the clients in each round's train config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class StrategySettings(Protocol):
    """What a strategy reads of the run's settings. `FederatedConfig` has it; naming the protocol, not the
    config, keeps this module below `apps` (which checks a run's strategy against the registry here)."""

    @property
    def proximal_mu(self) -> float: ...


Builder = Callable[[StrategySettings, dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class FederatedStrategy:
    """How to build one server strategy: ``message`` (message API) and ``legacy`` (workflow API)."""

    description: str
    message: Builder
    legacy: Builder


def _fedavg_message(config: StrategySettings, common: dict[str, Any]) -> Any:
    from flwr.serverapp.strategy import FedAvg

    return FedAvg(**common)


def _fedavg_legacy(config: StrategySettings, common: dict[str, Any]) -> Any:
    from flwr.server.strategy import FedAvg

    return FedAvg(**common)


def _fedprox_message(config: StrategySettings, common: dict[str, Any]) -> Any:
    from flwr.serverapp.strategy import FedProx

    return FedProx(proximal_mu=config.proximal_mu, **common)


def _fedprox_legacy(config: StrategySettings, common: dict[str, Any]) -> Any:
    from flwr.server.strategy import FedProx

    return FedProx(proximal_mu=config.proximal_mu, **common)


FEDERATED_STRATEGIES: dict[str, FederatedStrategy] = {
    "fedavg": FederatedStrategy(
        description="FedAvg: the example-weighted average of the client models (McMahan et al. 2017)",
        message=_fedavg_message,
        legacy=_fedavg_legacy,
    ),
    "fedprox": FederatedStrategy(
        description="FedProx: FedAvg whose clients add (μ/2)·‖w − w_global‖² to their loss (Li et al. 2018)",
        message=_fedprox_message,
        legacy=_fedprox_legacy,
    ),
}
