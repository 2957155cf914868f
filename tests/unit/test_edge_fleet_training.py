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


def _config(tmp_path: Path, arch: str | None) -> FleetTrainingConfig:
    return FleetTrainingConfig(
        repository=tmp_path / "repo", model="digits", superlink="127.0.0.1:9", private_key=tmp_path / "k.key",
        eval_data=tmp_path / "eval", workdir=tmp_path / "work", arch=arch,
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
