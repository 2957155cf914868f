"""Knowledge distillation into a narrower student of the same family.

The student is the teacher with every hidden layer narrowed to ``width`` of its units (so about width² of
its parameters), initialised from the teacher's strongest channels as DistilBERT initialises from its
teacher's layers, then trained on the teacher's temperature-softened logits plus the true labels.
"""

from __future__ import annotations

import copy

from torch import nn

from skyline.compression.finetune import FitConfig, fit_classifier
from skyline.compression.pruning import prune_structured
from skyline.compression.task import ClassificationData


def make_student(teacher: nn.Module, *, width: float) -> nn.Sequential:
    """The teacher's architecture with ``width`` × its hidden units (the output layer keeps every class)."""
    return prune_structured(copy.deepcopy(teacher), 1.0 - width)


def distill_student(
    teacher: nn.Module, data: ClassificationData, *, width: float, config: FitConfig
) -> nn.Module:
    """Train `make_student(teacher)` against the teacher's logits and return it in eval mode."""
    student = make_student(teacher, width=width)
    return fit_classifier(student, data, config, teacher=teacher.eval())
