"""Pins the public API: a change here is a deliberate, reviewed change of what users may import."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import skyline

pytestmark = pytest.mark.unit


def test_top_level_api_is_pinned() -> None:
    assert sorted(skyline.__all__) == [
        "Allocation",
        "Clock",
        "Cluster",
        "ClusterState",
        "DemandForecast",
        "Executor",
        "Job",
        "JobEvent",
        "JobKind",
        "JobSpec",
        "JobStatus",
        "Node",
        "Placement",
        "Resources",
        "SkylineError",
        "Tier",
        "__version__",
    ]
    for name in skyline.__all__:
        assert hasattr(skyline, name), name


def test_core_imports_the_standard_library_only() -> None:
    core = Path(skyline.__file__).parent / "core"
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = top in sys.stdlib_module_names or name.startswith(
                    ("skyline.core", "skyline.errors")
                )
                assert allowed, f"{path.name} imports {name}: core is standard library only"


def test_every_error_is_a_skyline_error_with_an_http_status() -> None:
    import skyline.errors as errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SkylineError)
        assert 400 <= cls.http_status < 600
