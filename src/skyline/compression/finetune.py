"""Fine-tuning a classifier, optionally against a teacher (knowledge distillation).

One small loop serves both pruning (recover accuracy after removing weights) and distillation (train a
student on the teacher's softened logits, Hinton et al. 2015): loss = α·T²·KL(p_T(teacher) ‖ p_T(student))
+ (1 − α)·CE(student, labels), where p_T is the softmax at temperature T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from skyline.compression.task import ClassificationData
from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class FitConfig:
    """How long and how fast to train; ``temperature``/``alpha`` matter only with a teacher."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    temperature: float = 4.0
    alpha: float = 0.7
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.lr <= 0 or self.batch_size < 1:
            raise ConfigError(f"lr must be > 0 and batch_size >= 1, got {self.lr}, {self.batch_size}")
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"temperature must be > 0 and alpha in [0, 1], got {self.temperature}, {self.alpha}"
            )


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton's loss; the T² factor keeps the soft-target gradients on the scale of the hard ones."""
    soft = functional.kl_div(
        functional.log_softmax(student_logits / temperature, dim=1),
        functional.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
    )
    hard = functional.cross_entropy(student_logits, labels)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def fit_classifier(
    model: nn.Module,
    data: ClassificationData,
    config: FitConfig,
    *,
    teacher: nn.Module | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``data.x_train`` (Adam, shuffled minibatches) and return it in eval mode."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if teacher is not None:
        teacher.eval()
    n = len(data.x_train)
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            x, y = data.x_train[index], data.y_train[index]
            logits = model(x)
            if teacher is None:
                loss = functional.cross_entropy(logits, y)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(x)
                loss = distillation_loss(
                    logits, teacher_logits, y, temperature=config.temperature, alpha=config.alpha
                )
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy in percent of ``model`` on ``x``."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch):
        correct += int((model(x[start : start + batch]).argmax(1) == y[start : start + batch]).sum())
    return 100.0 * correct / len(x)
