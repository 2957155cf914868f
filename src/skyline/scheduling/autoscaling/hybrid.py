"""`HybridAutoscaler`: a primary autoscaler, a floor under it and a scale-down cooldown.

What a live service runs (``skyline.cluster.autoscale_loop``), and what `simulate` replays to predict it:
one implementation, two callers. The predictive autoscaler sizes for a forecast; the reactive one, as
its floor, covers demand the forecast missed; while the forecaster cannot fit yet (the history is shorter
than it needs: `DataError`) the floor decides alone. A decrease waits ``cooldown_steps`` steps after the
last increase (replicas that just started are not stopped by the next dip).
"""

from __future__ import annotations

from dataclasses import dataclass

from skyline.errors import ConfigError, DataError
from skyline.scheduling.autoscaling.autoscaler import Autoscaler
from skyline.scheduling.autoscaling.target import ScalingTarget
from skyline.scheduling.forecasting.series import Series


@dataclass(frozen=True, slots=True, kw_only=True)
class HybridStep:
    """The inputs of one decision: each rule's units (None: it could not decide) and whether the
    cooldown held a decrease back."""

    primary: int | None
    floor: int | None
    held: bool


class HybridAutoscaler(Autoscaler):
    """``max(primary, floor)``, decreases held for ``cooldown_steps`` after an increase; `last` says why."""

    def __init__(
        self, primary: Autoscaler | None, *, floor: Autoscaler | None = None, cooldown_steps: int = 0
    ) -> None:
        if primary is None and floor is None:
            raise ConfigError("a hybrid autoscaler needs a primary autoscaler, a floor or both")
        if cooldown_steps < 0:
            raise ConfigError(f"cooldown_steps must be ≥ 0, got {cooldown_steps}")
        self.primary, self.floor, self.cooldown_steps = primary, floor, cooldown_steps
        self.name = primary.name if primary is not None else floor.name  # type: ignore[union-attr]
        self._since_increase = cooldown_steps  # no increase yet: nothing to hold back
        self.last: HybridStep | None = None

    def decide(self, history: Series, current: int, target: ScalingTarget) -> int:
        primary = self._primary(history, current, target)
        floor = None if self.floor is None else self.floor.decide(history, current, target)
        wanted = max(u for u in (primary, floor, target.min_units) if u is not None)
        held = wanted < current and self._since_increase < self.cooldown_steps
        if held:
            wanted = current
        self._since_increase = 0 if wanted > current else self._since_increase + 1
        self.last = HybridStep(primary=primary, floor=floor, held=held)
        return target.clamp(wanted)

    def _primary(self, history: Series, current: int, target: ScalingTarget) -> int | None:
        if self.primary is None:
            return None
        try:
            return self.primary.decide(history, current, target)
        except DataError:  # too little history for the forecaster yet: the floor decides alone
            if self.floor is None:
                raise
            return None
