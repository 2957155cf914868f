"""Ports: a free one, whether one is bindable, and the rendezvous port picked from a range."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyline.core.net import PortRange, free_port, port_is_bindable
from skyline.errors import ConfigError

pytestmark = pytest.mark.unit


def test_a_free_port_is_bindable_and_a_listening_one_is_not() -> None:
    port = free_port()
    assert 0 < port < 65536 and port_is_bindable(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not port_is_bindable(taken)
        assert not port_is_bindable(taken, "127.0.0.1")


def test_the_pick_is_deterministic_and_moves_with_the_attempt() -> None:
    ports = PortRange(first=29500, last=29509)
    assert len(ports) == 10
    assert ports.pick("job-a", 0) == PortRange(first=29500, last=29509).pick("job-a", 0)
    assert ports.pick("job-a", 1) == 29500 + (ports.pick("job-a", 0) - 29500 + 1) % 10
    assert {ports.pick(f"job-{k}", 0) for k in range(100)} == set(range(29500, 29510))  # spread over all


@given(
    key=st.text(max_size=40),
    attempt=st.integers(0, 10_000),
    first=st.integers(1024, 60000),
    size=st.integers(1, 5000),
)
def test_the_pick_stays_in_the_range(key: str, attempt: int, first: int, size: int) -> None:
    ports = PortRange(first=first, last=min(first + size - 1, 65535))
    assert ports.first <= ports.pick(key, attempt) <= ports.last


def test_parse_and_bad_ranges() -> None:
    assert PortRange.parse("30000-30099") == PortRange(first=30000, last=30099)
    assert PortRange.parse("30000") == PortRange(first=30000, last=30000)
    for bad in ("abc", "300-x", "-5", "1e4", "30000-", "3²000", "30000-30099-31000"):
        with pytest.raises(ConfigError, match="a port range is FIRST-LAST"):
            PortRange.parse(bad)
    for out_of_bounds in ("29999-29500", "80-90", "65000-70000"):
        with pytest.raises(ConfigError, match="1024 <= first <= last <= 65535"):
            PortRange.parse(out_of_bounds)
