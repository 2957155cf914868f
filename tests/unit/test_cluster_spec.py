"""Job specs from YAML/JSON mappings: what is accepted, and the message for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.cluster.spec import JobRequest, load_job_file, request_from_mapping
from skyline.core import JobKind, Resources, Tier
from skyline.errors import ConfigError

pytestmark = pytest.mark.unit


def test_a_full_mapping_becomes_a_request() -> None:
    request = request_from_mapping(
        {"command": "python train.py", "cpus": 2, "memory_mib": 1024, "gpus": 0.5, "replicas": 2,
         "kind": "training", "tier": "edge", "env": {"EPOCHS": 3}, "idempotency_key": "k"}
    )  # fmt: skip
    assert request.resources == Resources(cpu_milli=2000, memory_mib=1024, gpu_milli=500)
    assert request.replicas == 2 and request.kind is JobKind.TRAINING
    assert request.tiers == frozenset({Tier.EDGE}) and request.env == {"EPOCHS": "3"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"command": "x", "gpu": 1}, "unknown job field(s) gpu"),
        ({"command": "x", "kind": "game"}, "unknown job kind"),
        ({"command": "x", "tier": "moon"}, "unknown tier"),
        ({"command": "x", "cpus": "two"}, "must be a number"),
        ({"command": "x", "replicas": 0}, "replicas must be between 1 and 64"),
        ({"command": " "}, "non-empty command"),
        ({"command": "x", "cpus": 0, "memory_mib": 0}, "some CPU, memory or GPU"),
        ({"command": "x", "env": ["A=1"]}, "env must be a mapping"),
    ],
)
def test_bad_mappings_say_what_is_wrong(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        request_from_mapping(raw)


def test_a_job_file_must_be_a_yaml_mapping(tmp_path: Path) -> None:
    good = tmp_path / "job.yaml"
    good.write_text("command: echo hi\nreplicas: 3\n")
    assert load_job_file(good) == JobRequest(command="echo hi", replicas=3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_job_file(bad)
    with pytest.raises(ConfigError, match="cannot read job file"):
        load_job_file(tmp_path / "missing.yaml")
