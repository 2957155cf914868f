"""The inference server (`skyline.serving`, OIP v2) as a security target, over a one-model repository."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skyline.testing.api_target import (
    ApiTarget,
    Rule,
    TlsPair,
    role_tokens,
    serve_app,
)

__all__ = ["SERVING_RULES", "mlp_repository", "serving_target"]


SERVING_RULES: dict[str, Rule | None] = {
    "GET /v2/health/live": None,
    "GET /v2/health/ready": None,
    "GET /v2": None,
    "GET /v2/models/{name}": Rule("read", "models"),
    "GET /v2/models/{name}/versions/{version}": Rule("read", "models"),
    "GET /v2/models/{name}/ready": Rule("read", "models"),
    "GET /v2/models/{name}/versions/{version}/ready": Rule("read", "models"),
    "POST /v2/models/{name}/infer": Rule("invoke", "models"),
    "POST /v2/models/{name}/versions/{version}/infer": Rule("invoke", "models"),
    "POST /v2/repository/index": Rule("read", "repository"),
    "POST /v2/repository/models/{name}/load": Rule("update", "repository"),
    "POST /v2/repository/models/{name}/unload": Rule("update", "repository"),
    "GET /metrics": Rule("read", "metrics"),
}


def mlp_repository(folder: Path) -> Any:
    """A model repository at ``folder/repo`` holding one small ONNX MLP, ``mlp`` version 1."""
    from skyline.serving.repository import ModelRepository
    from skyline.serving.samples import write_mlp_onnx

    (folder / "repo").mkdir(parents=True, exist_ok=True)
    repo = ModelRepository(folder / "repo")
    repo.add(write_mlp_onnx(folder / "mlp.onnx"), name="mlp", version=1)
    return repo


@contextmanager
def serving_target(folder: Path, tls: TlsPair | None = None) -> Iterator[ApiTarget]:
    """The inference server (skyline.serving) over a one-model repository (a small ONNX MLP)."""
    from skyline.security.tokens import TokenAuthority
    from skyline.serving.app import MAX_BODY_BYTES, create_app

    repo = mlp_repository(folder / "serving")
    authority = TokenAuthority(folder / "serving" / "tokens.json")
    with serve_app(create_app(repo, authority=authority, cores=1), tls=tls) as url:
        yield ApiTarget(
            name="serving",
            url=url,
            tokens=role_tokens(authority),
            rules=SERVING_RULES,
            path_values={"name": "mlp", "version": "1"},
            body_limit_bytes=MAX_BODY_BYTES,
        )
