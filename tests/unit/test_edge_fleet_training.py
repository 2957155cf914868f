"""Where a federated run on the fleet starts from: the newest version's weights, or a fresh --arch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skyline.edge.fleet_training import FleetTrainingConfig, _starting_point
from skyline.edge.publish import publish_model
from skyline.errors import ConfigError
from skyline.federated.data_folder import write_rows
from skyline.security.signing import generate_signing_keys
from skyline.training.models import build_model


def _config(tmp_path: Path, arch: str | None, num_classes: int | None = None) -> FleetTrainingConfig:
    return FleetTrainingConfig(
        repository=tmp_path / "repo", model="digits", superlink="127.0.0.1:9", private_key=tmp_path / "k.key",
        eval_data=tmp_path / "eval", workdir=tmp_path / "work", arch=arch, num_classes=num_classes,
    )  # fmt: skip


def test_the_rounds_continue_from_the_newest_version_and_refuse_another_arch(tmp_path: Path) -> None:
    private, _ = generate_signing_keys(tmp_path / "k.key", tmp_path / "k.pub")
    write_rows(tmp_path / "eval", np.zeros((4, 1, 8, 8)), [0, 1, 2, 9])
    with pytest.raises(ConfigError, match="has no version yet"):
        _starting_point(_config(tmp_path, None), None)
    fresh, weights = _starting_point(_config(tmp_path, "mlp"), None)
    assert (fresh.arch, fresh.input_shape, fresh.num_classes, weights) == ("mlp", (1, 8, 8), 10, None)

    model = build_model("mlp", (1, 8, 8), 10)
    publish_model(model, (1, 8, 8), root=tmp_path / "repo", name="digits", version=1, private_key=private,
                  architecture="mlp")  # fmt: skip
    found, weights = _starting_point(_config(tmp_path, None), 1)
    assert found.arch == "mlp" and weights is not None and weights.exists()
    assert _starting_point(_config(tmp_path, "mlp"), 1)[0] == found  # the same arch: no conflict
    with pytest.raises(ConfigError, match="drop --arch"):
        _starting_point(_config(tmp_path, "cnn"), 1)


def test_num_classes_sizes_a_fresh_model_and_must_agree_with_the_data_and_the_version(tmp_path: Path) -> None:
    private, _ = generate_signing_keys(tmp_path / "k.key", tmp_path / "k.pub")
    write_rows(tmp_path / "eval", np.zeros((3, 1, 8, 8)), [0, 1, 5])  # classes 6..9 absent from the eval rows
    assert _starting_point(_config(tmp_path, "mlp"), None)[0].num_classes == 6
    assert _starting_point(_config(tmp_path, "mlp", 10), None)[0].num_classes == 10
    with pytest.raises(ConfigError, match="has label 5; pass at least 6"):
        _starting_point(_config(tmp_path, "mlp", 4), None)
    with pytest.raises(ConfigError, match="at least 2"):
        _config(tmp_path, "mlp", 1)
    publish_model(build_model("mlp", (1, 8, 8), 10), (1, 8, 8), root=tmp_path / "repo", name="digits", version=1,
                  private_key=private, architecture="mlp")  # fmt: skip
    assert _starting_point(_config(tmp_path, None, 10), 1)[0].num_classes == 10
    with pytest.raises(ConfigError, match="drop --num-classes"):
        _starting_point(_config(tmp_path, None, 12), 1)
