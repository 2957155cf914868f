"""The model registry (shapes, documented init, reproducibility) and TrainConfig validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from skyline.errors import ConfigError, NotFoundError, SkylineError
from skyline.training.config import TrainConfig
from skyline.training.models import MODELS, build_model, count_parameters

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_every_model_maps_a_batch_to_class_scores(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 10)
    assert isinstance(model, nn.Sequential)
    assert model(torch.zeros(5, *shape)).shape == (5, 10)


def test_initialization_is_the_documented_one_and_seeded() -> None:
    torch.manual_seed(7)
    first = build_model("cnn", (1, 8, 8), 10)
    torch.manual_seed(7)
    second = build_model("cnn", (1, 8, 8), 10)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
    conv = first[0]
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None and not conv.bias.any()
    # Kaiming normal, fan-in 1·3·3 = 9: std sqrt(2/9) ≈ 0.471 (loose: 288 draws).
    assert float(conv.weight.detach().std()) == pytest.approx((2 / 9) ** 0.5, rel=0.2)
    out = first[-1]
    assert isinstance(out, nn.Linear)
    bound = (6 / (out.in_features + out.out_features)) ** 0.5  # Xavier uniform
    assert float(out.weight.detach().abs().max()) <= bound


def test_parameter_counts_are_what_the_architecture_says() -> None:
    assert count_parameters(build_model("linear", (8,), 3)) == 8 * 3 + 3
    assert count_parameters(build_model("mlp", (1, 8, 8), 10)) == (64 * 128 + 128) + (128 * 64 + 64) + (
        64 * 10 + 10
    )


def test_unknown_models_and_wrong_inputs_are_refused() -> None:
    with pytest.raises(NotFoundError, match="models are linear, mlp, cnn"):
        build_model("resnet", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="image inputs"):
        build_model("cnn", (8,), 3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw"),
        ({"batch_size": 63, "workers": 2}, "divisible by workers 2"),
        ({"prune": 1.0}, r"prune must be in \[0, 1\)"),
        ({"prune": 0.5, "epochs": 1}, "raise --epochs"),
        ({"dp_epsilon": 0.0}, "dp_epsilon must be > 0"),
        ({"dp_epsilon": 3.0, "workers": 2}, "one process"),
        ({"dp_epsilon": 3.0, "prune": 0.5}, "pruning during DP-SGD"),
        ({"launcher": "slurm"}, "launcher must be one of local, ray, env"),
        ({"prune_kind": "random"}, "prune_kind must be one of"),
    ],
)
def test_bad_configs_say_what_and_how_to_fix(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)  # type: ignore[arg-type]


def test_yaml_files_build_configs_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("dataset: digits\nmodel: mlp\nepochs: 4\nbatch-size: 32\nout_dir: runs/x\n")
    config = TrainConfig.from_yaml(path, epochs=9)
    assert (config.model, config.epochs, config.batch_size, config.out_dir) == ("mlp", 9, 32, Path("runs/x"))
    path.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown training option\\(s\\) learning_rate"):
        TrainConfig.from_yaml(path)
    path.write_text("epochs: many\n")
    with pytest.raises(ConfigError):
        TrainConfig.from_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrainConfig.from_yaml(path)


def test_a_workers_skyline_error_is_raised_again_in_the_parent_as_the_same_class(tmp_path: Path) -> None:
    from skyline.errors import DataError
    from skyline.training.distributed import _relayed_error

    assert _relayed_error(tmp_path) is None
    (tmp_path / "rank-1.json").write_text('{"type": "DataError", "message": "x.csv:3: 2 fields"}')
    (tmp_path / "rank-0.json").write_text('{"type": "os.system", "message": "not an error class"}')
    relayed = _relayed_error(tmp_path)
    assert (
        type(relayed) is SkylineError and str(relayed) == "not an error class"
    )  # rank 0 first, unknown type
    (tmp_path / "rank-0.json").unlink()
    relayed = _relayed_error(tmp_path)
    assert isinstance(relayed, DataError) and str(relayed) == "x.csv:3: 2 fields"
