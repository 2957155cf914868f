"""Schemathesis against the server's own OpenAPI document: no generated request gets a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from skyline.serving.app import create_app
from skyline.serving.repository import ModelRepository
from skyline.serving.samples import write_mlp_onnx
from skyline.serving.server import BackgroundServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("schema") / "repo"
    root.mkdir()
    repo = ModelRepository(root)
    repo.add(write_mlp_onnx(root.parent / "mlp.onnx"), name="mlp", version=1)
    with BackgroundServer(create_app(repo, cores=1)) as server:
        yield server.url


def test_no_generated_request_gets_a_server_error(server_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def no_5xx(case: Any) -> None:
            response = case.call(base_url=server_url)
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.status_code,
                response.text,
            )
            if response.status_code >= 400:
                assert "error" in response.json()

        no_5xx()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v2/models/{name}/infer" in checked and len(checked) >= 10
