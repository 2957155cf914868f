"""`TrainConfig`: everything one training run needs, validated once; YAML files and CLI flags build it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skyline.errors import ConfigError
from skyline.training.fit import OPTIMIZERS, OptimizerName
from skyline.training.privacy import ACCOUNTANTS, Accountant

Schedule = Literal["constant", "cosine", "step"]
Launcher = Literal["local", "ray", "env"]
PruneKind = Literal["unstructured", "structured"]

SCHEDULES = ("constant", "cosine", "step")
LAUNCHERS = ("local", "ray", "env")
PRUNE_KINDS = ("unstructured", "structured")


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """One training run. Defaults train a digits CNN well in under a minute on one CPU core.

    The global batch ``batch_size`` is split evenly over ``workers`` processes (each takes
    ``batch_size / workers`` rows of the same global batch), so runs with different worker counts and the
    same seed see the same batches in the same order.
    """

    dataset: str = "digits"
    model: str = "cnn"
    out_dir: Path = Path("runs/train")
    data_path: Path | None = None  # the CSV file for dataset 'csv'
    label_column: str | None = None  # for 'csv'; default the last column
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    seed: int = 0

    epochs: int = 20
    batch_size: int = 64  # global: summed over workers
    optimizer: OptimizerName = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    lr_schedule: Schedule = "cosine"  # per epoch; 'step' halves the rate every lr_step_epochs
    lr_step_epochs: int = 10
    patience: int = 5  # early stopping: epochs without a better validation loss; 0 turns it off

    workers: int = 1
    launcher: Launcher = "local"
    checkpoint_every_steps: int = 0  # 0: one checkpoint at the end of every epoch
    keep_checkpoints: int = 3
    resume: bool = False

    prune: float = (
        0.0  # final fraction: of all weights (unstructured) or of each layer's channels (structured)
    )
    prune_kind: PruneKind = "unstructured"
    prune_start_epoch: int = 1  # the cubic ramp goes from 0 at this epoch ...
    prune_end_epoch: int | None = None  # ... to `prune` at this one (default: 2/3 of the epochs)
    prune_every_steps: int = 10

    dp_epsilon: float | None = None  # DP-SGD with Opacus when set
    dp_delta: float = 1e-5
    max_grad_norm: float = 1.0  # per-sample gradient clipping bound C
    dp_accountant: Accountant = "prv"
    dp_fix_model: bool = True  # replace BatchNorm by GroupNorm (with a notice) instead of refusing

    export_onnx: bool = True
    plot: bool = True

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, SCHEDULES)
        _choice("launcher", self.launcher, LAUNCHERS)
        _choice("prune_kind", self.prune_kind, PRUNE_KINDS)
        _choice("dp_accountant", self.dp_accountant, ACCOUNTANTS)
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "workers": self.workers}
        positive |= {"lr_step_epochs": self.lr_step_epochs, "prune_every_steps": self.prune_every_steps}
        positive |= {"keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.patience < 0 or self.checkpoint_every_steps < 0 or self.weight_decay < 0:
            raise ConfigError("patience, checkpoint_every_steps and weight_decay must be >= 0")
        if self.batch_size % self.workers:
            raise ConfigError(
                f"batch_size {self.batch_size} must be divisible by workers {self.workers} "
                "(each worker takes an equal share of the global batch)"
            )
        self._check_pruning()
        self._check_privacy()

    def _check_pruning(self) -> None:
        if not 0 <= self.prune < 1:
            raise ConfigError(f"prune must be in [0, 1), the fraction to remove; got {self.prune}")
        end = self.pruning_end_epoch
        if self.prune > 0 and not 0 <= self.prune_start_epoch < end <= self.epochs:
            raise ConfigError(
                f"pruning ramps from epoch {self.prune_start_epoch} to {end}; need 0 <= start < end <= "
                f"epochs ({self.epochs}): raise --epochs or set prune_start_epoch/prune_end_epoch"
            )

    def _check_privacy(self) -> None:
        if self.dp_epsilon is None:
            return
        if not self.dp_epsilon > 0:
            raise ConfigError(f"dp_epsilon must be > 0, got {self.dp_epsilon}")
        if not 0 < self.dp_delta < 1:
            raise ConfigError(f"dp_delta must be in (0, 1), typically < 1/train-rows; got {self.dp_delta}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.workers > 1:
            raise ConfigError("differential privacy runs in one process here; drop --workers or --dp-epsilon")
        if self.prune > 0:
            raise ConfigError(
                "pruning during DP-SGD is not supported; train privately, then prune with `skyline compress`"
            )

    @property
    def pruning_end_epoch(self) -> int:
        if self.prune_end_epoch is not None:
            return self.prune_end_epoch
        return max(self.prune_start_epoch + 1, round(self.epochs * 2 / 3))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings), for logs and checkpoints."""
        return {
            f.name: str(v) if isinstance(v := getattr(self, f.name), Path) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (a parsed YAML file); unknown keys are an error, hyphens read as underscores."""
        known = {f.name for f in dataclasses.fields(cls)}
        normalized = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(normalized) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {', '.join(unknown)}; options are {', '.join(sorted(known))}"
            )
        for key in ("out_dir", "data_path"):
            if normalized.get(key) is not None:
                normalized[key] = Path(normalized[key])
        try:
            return cls(**normalized)
        except TypeError as exc:
            raise ConfigError(f"bad training option: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: Path, **overrides: Any) -> TrainConfig:
        """Read a YAML mapping of options from ``path``, then apply ``overrides`` (CLI flags win)."""
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config {path} must be a mapping of option: value, got {type(loaded).__name__}"
            )
        return cls.from_mapping({**loaded, **overrides})
