"""The policy registry: name → policy class, built as ``POLICIES[name](options)``.

Every entry passes the contract suite in tests/contract; each class names its typed options
(``POLICIES[name].Options``), so callers build options without knowing which policy they hold.
"""

from __future__ import annotations

from typing import Any

from skyline.errors import NotFoundError
from skyline.scheduling.policies.forecast_reserve import ForecastReserve, ReserveOptions
from skyline.scheduling.policies.heterogeneity import GavelMaxMin, GavelThroughput, HeterogeneityOptions
from skyline.scheduling.policies.optimizing import Cpsat, CpsatOptions, Genetic, Pso, SeedOptions
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
from skyline.scheduling.policies.tiresias import GittinsOptions, LasOptions, TiresiasGittins, TiresiasLas
from skyline.scheduling.policy import Policy, PolicyOptions, options_for

POLICIES: dict[str, type[Policy]] = {
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
    "gavel-max-min": GavelMaxMin,
    "gavel-throughput": GavelThroughput,
    "forecast-reserve": ForecastReserve,
}


def policy_class(name: str) -> type[Policy]:
    """The registered class; raises `NotFoundError` listing the names on a typo."""
    try:
        return POLICIES[name]
    except KeyError:
        raise NotFoundError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}") from None


def make_policy(name: str, options: PolicyOptions | None = None, **values: Any) -> Policy:
    """A fresh policy by registry name, with ``options`` or built from ``values`` (its option fields)."""
    cls = policy_class(name)
    if options is None and values:
        options = options_for(cls, **values)
    return cls(options)


__all__ = [
    "POLICIES",
    "CpsatOptions",
    "GittinsOptions",
    "HeterogeneityOptions",
    "LasOptions",
    "Policy",
    "PolicyOptions",
    "ReserveOptions",
    "SeedOptions",
    "make_policy",
    "options_for",
    "policy_class",
]
