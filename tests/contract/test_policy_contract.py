"""Every registered scheduling policy passes the same contract."""

from __future__ import annotations

import pytest

from skyline.scheduling.policies import POLICIES
from skyline.testing import policy_contract as contract

pytestmark = pytest.mark.unit
NAMES = sorted(POLICIES)


@pytest.mark.parametrize("name", NAMES)
def test_identity(name: str) -> None:
    contract.check_identity(name, POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_empty_state(name: str) -> None:
    contract.check_empty_state(POLICIES[name]())
    contract.check_empty_allocation_type(POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_feasible_and_busy(name: str) -> None:
    contract.check_feasible_and_busy(POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_respects_running(name: str) -> None:
    contract.check_respects_running(POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    contract.check_deterministic(POLICIES[name](), POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_simulates(name: str) -> None:
    contract.check_simulates(POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_tiers(name: str) -> None:
    contract.check_tiers(POLICIES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_simulated_tiers(name: str) -> None:
    contract.check_simulated_tiers(POLICIES[name]())
