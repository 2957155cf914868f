"""What a training run reports: per-epoch metrics and the final `TrainResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skyline.training.privacy import PrivacyReport

# The exact keys of metrics.json, in order (the contract).
METRICS_KEYS = (
    "test_accuracy",
    "val_accuracy",
    "epochs",
    "workers",
    "train_time_s",
    "samples_per_s",
    "params",
    "sparsity",
    "epsilon",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochMetrics:
    """One epoch: mean training loss over its steps, validation loss and accuracy (None for regression)."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float | None
    lr: float
    sparsity: float  # fraction of prunable weights that are zero at the end of this epoch
    epsilon: float | None  # privacy spent so far (DP runs)
    elapsed_s: float  # training time since the start, resumed runs included


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    """The outcome of `skyline.training.trainer.train`."""

    test_accuracy: float | None  # None for regression
    test_loss: float
    val_accuracy: float | None  # of the weights kept (the best epoch with early stopping)
    epochs: int  # epochs completed
    workers: int
    train_time_s: float
    samples_per_s: float  # training samples processed per second, over all workers
    params: int  # parameters of the saved model (smaller after structured pruning)
    sparsity: float  # fraction of the dense model's prunable weights that are zero or removed
    epsilon: float | None  # (ε, δ)-DP budget spent, None without DP
    out_dir: Path
    privacy: PrivacyReport | None = None  # the whole guarantee (ε, δ, unit, accountant, σ, C) with DP
    history: tuple[EpochMetrics, ...] = ()
    stopped_early: bool = False
    notices: tuple[str, ...] = ()  # things the user should know (a model changed for DP, ...)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path

    def metrics(self) -> dict[str, Any]:
        """The metrics.json payload: exactly `METRICS_KEYS`."""
        return {key: getattr(self, key) for key in METRICS_KEYS}

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["out_dir"] = str(self.out_dir)
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainResult:
        values = {k: v for k, v in payload.items() if k != "config"}
        values["out_dir"] = Path(values["out_dir"])
        values["history"] = tuple(EpochMetrics(**h) for h in values.get("history", ()))
        values["notices"] = tuple(values.get("notices", ()))
        if values.get("privacy") is not None:
            values["privacy"] = PrivacyReport(**values["privacy"])
        return cls(**values)
