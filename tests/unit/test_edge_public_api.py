"""Pins the public API of skyline.edge and skyline.federated: a change here is deliberate and reviewed."""

from __future__ import annotations

import pytest

import skyline.edge
import skyline.federated

pytestmark = pytest.mark.unit


def test_edge_api_is_pinned() -> None:
    assert skyline.edge.__all__ == [
        "AgentConfig", "CascadeRouter", "CloudClient", "CloudConfig", "EDGE_STRATEGIES", "EdgeAgent", "EdgeCloud",
        "EdgeStrategy", "FederatedNode", "FleetClient", "FleetStore", "FleetTrainingConfig", "HardExampleDetector",
        "LayerProfile", "LinkConditions", "LinkProxy", "LocalModel", "NetworkProfile", "PartitionController",
        "RolloutController", "RolloutSpec", "SplitModel", "UplinkPolicy", "UplinkSender", "UplinkStore",
        "choose_partition", "create_agent_app", "publish_model", "train_on_fleet",
    ]  # fmt: skip


def test_federated_api_is_pinned() -> None:
    assert skyline.federated.__all__ == [
        "FEDERATED_STRATEGIES", "FederatedConfig", "FederatedStrategy", "LocalTraining", "LoopbackFederation",
        "dirichlet_partition", "read_rows", "run_federated", "start_superlink", "start_supernode", "submit_run",
        "weighted_average", "write_rows",
    ]  # fmt: skip


@pytest.mark.parametrize("package", [skyline.edge, skyline.federated])
def test_every_public_name_resolves(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError):
        _ = package.no_such_name  # type: ignore[attr-defined]
