"""Knowledge distillation into a narrower student of the same family (Hinton et al. 2015).

The student is the teacher with every hidden layer narrowed to ``width`` of its units (so about width² of
its parameters), initialised from the teacher's strongest channels as DistilBERT initialises from its
teacher's layers, then trained by the project's one loop (`skyline.training.fit`) on
loss = α·T²·KL(p_T(teacher) ‖ p_T(student)) + (1 − α)·CE(student, labels), p_T the softmax at temperature T.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from skyline.compression.pruning import prune_structured
from skyline.compression.task import ClassificationData
from skyline.training.fit import FitConfig, LossFn, fit


def make_student(teacher: nn.Module, *, width: float) -> nn.Sequential:
    """The teacher's architecture with ``width`` × its hidden units (the output layer keeps every class)."""
    return prune_structured(teacher, 1.0 - width)  # a new model: the teacher is left as it is


def distillation_loss(teacher: nn.Module, *, temperature: float, alpha: float) -> LossFn:
    """Hinton's loss against ``teacher``; the T² factor keeps the soft-target gradients on the scale of
    the hard ones."""

    def loss(student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = student(x)
        with torch.no_grad():
            teacher_logits = teacher(x)
        soft = functional.kl_div(
            functional.log_softmax(logits / temperature, dim=1),
            functional.softmax(teacher_logits / temperature, dim=1),
            reduction="batchmean",
        )
        return alpha * temperature**2 * soft + (1.0 - alpha) * functional.cross_entropy(logits, y)

    return loss


def distill_student(
    teacher: nn.Module,
    data: ClassificationData,
    *,
    width: float,
    config: FitConfig,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> nn.Module:
    """Train `make_student(teacher)` against the teacher's logits and return it in eval mode."""
    student = make_student(teacher, width=width)
    loss = distillation_loss(teacher.eval(), temperature=temperature, alpha=alpha)
    fit(student, data.x_train, data.y_train, config, loss=loss)
    return student
