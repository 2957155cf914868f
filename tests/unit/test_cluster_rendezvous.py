"""Rank 0 checks its MASTER_PORT before starting; other ranks and single replicas never do."""

from __future__ import annotations

import socket

import pytest

from skyline.cluster.replica_process import PORT_TAKEN_EXIT_CODE, ReplicaProcess, rendezvous_problem
from skyline.core.net import free_port

pytestmark = pytest.mark.unit


def gang_env(rank: int, port: int | str, world: int = 2) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def test_only_rank_zero_of_a_real_gang_checks_its_port() -> None:
    with socket.socket() as squatter:
        squatter.bind(("", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        assert rendezvous_problem(gang_env(0, taken)) is not None
        assert rendezvous_problem(gang_env(1, taken)) is None  # joins, never binds
        assert rendezvous_problem(gang_env(0, taken, world=1)) is None  # no rendezvous at all
    assert rendezvous_problem(gang_env(0, free_port())) is None
    for bad in ("", "0", "70000", "http"):
        assert "MASTER_PORT" in (rendezvous_problem(gang_env(0, bad)) or "")


def test_a_refused_replica_ends_at_once_with_the_reason_and_starts_nothing() -> None:
    with socket.socket() as squatter:
        squatter.bind(("", 0))
        squatter.listen()
        replica = ReplicaProcess("j/0/0", "echo must-not-run", gang_env(0, squatter.getsockname()[1]))
    assert replica.pid is None and replica.exit_code() == PORT_TAKEN_EXIT_CODE
    lines = replica.take_lines()
    assert len(lines) == 1 and "in use" in lines[0] and "must-not-run" not in lines[0]
    replica.stop()  # nothing to stop: no error
    assert replica.stopped_by_agent
