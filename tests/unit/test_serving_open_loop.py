"""The open loop's arrivals: Poisson at each step's rate, inside that step, reproducible from the seed."""

from __future__ import annotations

import asyncio
import random

import pytest

from skyline.errors import ConfigError
from skyline.serving.loadgen import ConnectionPool, open_loop, poisson_arrivals

pytestmark = pytest.mark.unit


def test_arrivals_follow_each_steps_rate_and_stay_inside_it() -> None:
    rates, step_s = [200.0, 0.0, 50.0], 10.0
    times = list(poisson_arrivals(rates, step_s, 100.0, random.Random(3)))
    per_step = [sum(100 + i * step_s <= t < 100 + (i + 1) * step_s for t in times) for i in range(3)]
    assert per_step[1] == 0
    # Poisson counts: mean rate x step, standard deviation its square root (4 sigma either side).
    for count, rate in ((per_step[0], 200.0), (per_step[2], 50.0)):
        mean = rate * step_s
        assert abs(count - mean) < 4 * mean**0.5
    assert times == sorted(times)
    assert times == list(poisson_arrivals(rates, step_s, 100.0, random.Random(3)))


@pytest.mark.parametrize(("rates", "step_s"), [([1.0], 0.0), ([-1.0], 1.0)])
def test_an_open_loop_refuses_a_bad_series(rates: list[float], step_s: float) -> None:
    pool = ConnectionPool("http://127.0.0.1:9", 1)
    with pytest.raises(ConfigError, match="open loop needs"):
        asyncio.run(open_loop(pool, path="/", body=b"", headers={}, rates_rps=rates, step_s=step_s))


def test_a_pool_needs_a_connection() -> None:
    with pytest.raises(ConfigError, match="at least one connection"):
        ConnectionPool("http://127.0.0.1:9", 0)
