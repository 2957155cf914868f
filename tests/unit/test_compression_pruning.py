"""Pruning ratios are exact, structured pruning really removes units, recipes validate their steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from skyline.compression.distill import make_student
from skyline.compression.pruning import hidden_sizes, prune_structured, schedule_targets
from skyline.compression.recipe import builtin_recipes, load_recipe
from skyline.errors import ConfigError, DataError, NotFoundError
from skyline.testing.compression import small_cnn
from skyline.training.models import count_parameters

pytestmark = pytest.mark.unit


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3)
    )


def test_structured_pruning_removes_floor_of_amount_units_and_rewires_the_next_layer() -> None:
    model = small_cnn(width=8)  # conv 1→8, conv 8→16, linear 16·4·4→32, linear 32→10
    pruned = prune_structured(model, 0.5)
    convs = [m for m in pruned if isinstance(m, nn.Conv2d)]
    linears = [m for m in pruned if isinstance(m, nn.Linear)]
    norms = [m for m in pruned if isinstance(m, nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [4, 8]
    assert [c.in_channels for c in convs] == [1, 4]
    assert [n.num_features for n in norms] == [4, 8]
    assert (linears[0].in_features, linears[0].out_features) == (8 * 4 * 4, 16)
    assert (linears[1].in_features, linears[1].out_features) == (16, 10)  # the output layer keeps every class
    assert pruned(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    # 7 of 10 hidden units → 10 − floor(10 × 0.3) = 7
    assert [m.out_features for m in prune_structured(_mlp(), 0.3) if isinstance(m, nn.Linear)] == [7, 5, 3]


def test_staged_pruning_lands_exactly_on_the_one_shot_sizes() -> None:
    assert schedule_targets([32, 64, 128], 0.5, 2) == [[24, 48, 96], [16, 32, 64]]
    assert schedule_targets([10, 7], 0.3, 3)[-1] == [7, 5]  # same as one cut: 10 − 3, 7 − 2
    model = small_cnn(width=8)
    staged = model
    for keep in schedule_targets(hidden_sizes(model), 0.5, 2):
        staged = prune_structured(staged, 0.5, keep=keep)
    assert hidden_sizes(staged) == hidden_sizes(prune_structured(model, 0.5)) == [4, 8, 16]
    with pytest.raises(ConfigError, match="stages"):
        schedule_targets([8], 0.5, 0)


def test_structured_pruning_keeps_the_function_of_the_units_it_keeps() -> None:
    model = small_cnn(width=8).eval()
    x = torch.randn(5, 1, 8, 8)
    same = prune_structured(model, 0.0)
    torch.testing.assert_close(same(x), model(x))
    assert count_parameters(same) == count_parameters(model)


def test_structured_pruning_zeroed_channels_change_nothing() -> None:
    # Units with zero weights are the weakest: removing them must leave the output unchanged.
    model = _mlp().eval()
    with torch.no_grad():
        model[1].weight[5:] = 0.0
        model[1].bias[5:] = 0.0
    pruned = prune_structured(model, 0.5)
    x = torch.randn(4, 12)
    assert pruned[1].out_features == 5
    # Layer 3 also lost units, so compare the first layer's kept activations instead of the logits.
    torch.testing.assert_close(pruned[1](x.flatten(1)), model[1](x.flatten(1))[:, :5])


def test_student_has_at_most_a_quarter_of_the_teacher_parameters() -> None:
    teacher = small_cnn()
    student = make_student(teacher, width=0.45)
    assert count_parameters(student) <= count_parameters(teacher) / 4


def test_structured_pruning_refuses_what_it_cannot_rewire() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(ConfigError, match="plain chain"):
        prune_structured(Branchy(), 0.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        prune_structured(_mlp(), 1.0)
    with pytest.raises(ConfigError, match="cannot see through"):
        prune_structured(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), 0.5)


def test_builtin_recipes_and_yaml_recipes(tmp_path: Path) -> None:
    assert {"int8", "prune50-int8", "distill-int8"} <= set(builtin_recipes())
    assert [s.name for s in builtin_recipes()["prune50-int8"].steps] == [
        "prune",
        "export",
        "optimize",
        "quantize",
    ]
    good = tmp_path / "mine.yaml"
    good.write_text("name: p30\nsteps:\n  - prune: {kind: unstructured, amount: 0.3}\n  - export\n")
    recipe = load_recipe(str(good))
    assert recipe.name == "p30" and [s.name for s in recipe.steps] == ["prune", "export"]
    bad_step = tmp_path / "bad.yaml"
    bad_step.write_text("steps:\n  - shrink: {}\n")
    with pytest.raises(ConfigError, match="unknown recipe step 'shrink'"):
        load_recipe(str(bad_step))
    bad_option = tmp_path / "opt.yaml"
    bad_option.write_text("steps:\n  - prune: {amont: 0.3}\n")
    with pytest.raises(ConfigError, match="amont"):
        load_recipe(str(bad_option))
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_recipe(str(broken))
    with pytest.raises(NotFoundError, match="unknown recipe"):
        load_recipe("int9")


def test_unstructured_prune_step_keeps_exactly_its_zeros_through_fine_tuning(tmp_path: Path) -> None:
    from skyline.compression.artifact import TorchArtifact
    from skyline.compression.steps import StepContext, build_step
    from skyline.compression.subjects import training_data
    from skyline.compression.task import classification_task

    torch.manual_seed(0)
    model = small_cnn(width=4)
    step = build_step("prune", {"kind": "unstructured", "amount": 0.3, "finetune_epochs": 1})
    ctx = StepContext(
        task=classification_task("digits", training_data("digits")), work_dir=tmp_path, prefix="p"
    )
    result = step.apply(TorchArtifact(model), ctx)
    assert isinstance(result, TorchArtifact)
    weights = [m.weight for m in result.module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    total = sum(w.numel() for w in weights)
    assert sum(int((w == 0).sum()) for w in weights) == round(0.3 * total)  # the fine-tuning revived none
    original = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert not any(torch.equal(w, o) for w, o in zip(weights, original, strict=True))  # and it did train


def test_a_layer_is_judged_on_the_inputs_that_survive_the_cut_before_it() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[5.0, 0.0], [0.1, 0.0]]))  # unit 1 is the weak one: cut
        # Unit 0 of the next layer is the strongest over all inputs (10.1) but reads mostly the cut unit;
        # over the surviving input, unit 1 (2.0) beats it (0.1).
        model[2].weight.copy_(torch.tensor([[0.1, 10.0], [2.0, 0.0]]))
    pruned = prune_structured(model, 0.5)
    assert pruned[2].weight.tolist() == [[2.0]]
