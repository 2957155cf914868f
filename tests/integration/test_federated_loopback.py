"""`LoopbackFederation.run` past its deadline: one `UnavailableError` line, not a `TimeoutExpired` traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.errors import UnavailableError
from skyline.federated.apps import FederatedConfig
from skyline.federated.loopback import LoopbackFederation

pytestmark = pytest.mark.integration


def test_a_run_past_its_timeout_is_unavailable_and_leaves_no_process(tmp_path: Path) -> None:
    # Not entered: no SuperLink, so `flwr run` could never finish; 0.05 s is far less than the CLI's start
    # (a Python interpreter importing Flower), so the deadline always comes first.
    federation = LoopbackFederation(2, tmp_path)
    with pytest.raises(UnavailableError, match="did not finish within"):
        federation.run(FederatedConfig(clients=2, rounds=1), timeout_s=0.05)
    federation.close()
    assert federation.processes == []
