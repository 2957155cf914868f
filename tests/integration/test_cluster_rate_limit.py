"""`skyline cluster up --rate-limit R`: each token gets R requests/s (burst 2R), then 429 + Retry-After."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from skyline.cluster.server import ServerConfig, ServerThread
from skyline.errors import ConfigError
from skyline.security.rbac import Role

pytestmark = pytest.mark.integration


def test_a_token_over_its_rate_is_refused_with_429_and_others_are_not(tmp_path: Path) -> None:
    # 0.5 requests/s: a burst of 1, then the bucket refills in 2 s — far longer than two quick calls.
    config = ServerConfig(state_dir=tmp_path / "state", port=0, rate_limit_per_s=0.5)
    with ServerThread(config) as server:
        authority = server.built.authority
        busy = authority.issue("busy", Role.VIEWER)
        calm = authority.issue("calm", Role.VIEWER)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = client.get("/v1/jobs", headers={"Authorization": f"Bearer {busy}"})
            second = client.get("/v1/jobs", headers={"Authorization": f"Bearer {busy}"})
            other = client.get("/v1/jobs", headers={"Authorization": f"Bearer {calm}"})
            health = client.get("/healthz")
    assert first.status_code == 200
    assert second.status_code == 429
    assert float(second.headers["retry-after"]) >= 1
    assert "rate limit" in second.json()["error"]
    assert other.status_code == 200  # per token, not global
    assert health.status_code == 200  # liveness needs no token and is not limited


def test_a_non_positive_rate_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rate-limit"):
        ServerConfig(state_dir=tmp_path, rate_limit_per_s=0)
