"""The policy registry: name → factory. Every entry passes the contract suite in tests/contract."""

from __future__ import annotations

from collections.abc import Callable

from skyline.errors import NotFoundError
from skyline.scheduling.policies.optimizing import Cpsat, Genetic, Pso
from skyline.scheduling.policies.ranked import (
    BestFit,
    Fifo,
    FifoBackfill,
    FragmentationAware,
    Sjf,
    Spread,
    Srsf,
    Srtf,
)
from skyline.scheduling.policies.tiresias import TiresiasGittins, TiresiasLas
from skyline.scheduling.policy import Policy

POLICIES: dict[str, Callable[[], Policy]] = {
    "fifo": Fifo,
    "fifo-backfill": FifoBackfill,
    "sjf": Sjf,
    "srtf": Srtf,
    "srsf": Srsf,
    "tiresias-las": TiresiasLas,
    "tiresias-gittins": TiresiasGittins,
    "best-fit": BestFit,
    "spread": Spread,
    "fragmentation-aware": FragmentationAware,
    "genetic": Genetic,
    "pso": Pso,
    "cpsat": Cpsat,
}


def make_policy(name: str) -> Policy:
    """A fresh policy by registry name; raises `NotFoundError` listing the names on a typo."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise NotFoundError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}") from None
    return factory()


__all__ = ["POLICIES", "make_policy"]
