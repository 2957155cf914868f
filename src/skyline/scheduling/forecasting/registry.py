"""`FORECASTERS`: every forecaster by name, as a factory taking the forecast horizon (in steps)."""

from __future__ import annotations

from collections.abc import Callable

from skyline.errors import ConfigError, NotFoundError
from skyline.scheduling.forecasting.auto import Auto
from skyline.scheduling.forecasting.baselines import Persistence, seasonal_naive_daily, seasonal_naive_weekly
from skyline.scheduling.forecasting.ensemble import Ensemble
from skyline.scheduling.forecasting.forecaster import Forecaster
from skyline.scheduling.forecasting.gbdt import GradientBoosting
from skyline.scheduling.forecasting.holt_winters import HoltWinters
from skyline.scheduling.forecasting.sarima import Sarima

ForecasterFactory = Callable[[int], Forecaster]

# What `auto` chooses among: SARIMA is left out because its fits cost ten times the others'.
AUTO_CANDIDATES: dict[str, ForecasterFactory] = {
    "persistence": lambda horizon: Persistence(),
    "seasonal-naive-daily": lambda horizon: seasonal_naive_daily(),
    "seasonal-naive-weekly": lambda horizon: seasonal_naive_weekly(),
    "holt-winters": lambda horizon: HoltWinters(),
    "gbdt": lambda horizon: GradientBoosting(max_lead=horizon),
    "ensemble": lambda horizon: Ensemble(max_lead=horizon),
}

FORECASTERS: dict[str, ForecasterFactory] = {
    **AUTO_CANDIDATES,
    "sarima": lambda horizon: Sarima(),
    "auto": lambda horizon: Auto(candidates=AUTO_CANDIDATES, horizon=horizon),
}


def make_forecaster(name: str, *, horizon: int) -> Forecaster:
    """A new forecaster ``name`` for forecasts of ``horizon`` steps; `NotFoundError` lists the names."""
    if horizon < 1:
        raise ConfigError(f"horizon must be ≥ 1 step, got {horizon}")
    try:
        factory = FORECASTERS[name]
    except KeyError:
        raise NotFoundError(f"no forecaster {name!r}; choose from {', '.join(sorted(FORECASTERS))}") from None
    return factory(horizon)


def parse_models(text: str) -> list[str]:
    """``"a,b,c"`` → names, each checked against the registry."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--models is empty; give comma-separated names, e.g. persistence,gbdt")
    unknown = [n for n in names if n not in FORECASTERS]
    if unknown:
        raise NotFoundError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(FORECASTERS))}"
        )
    return names
