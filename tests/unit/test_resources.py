from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyline.core import Resources
from skyline.errors import CapacityError, ConfigError

pytestmark = pytest.mark.unit

amounts = st.builds(
    Resources,
    cpu_milli=st.integers(0, 10**6),
    memory_mib=st.integers(0, 10**6),
    gpu_milli=st.integers(0, 16_000),
)


def test_of_converts_whole_units_to_milli() -> None:
    r = Resources.of(cpus=2.5, memory_mib=1024, gpus=0.25, gpu_type="V100")
    assert (r.cpu_milli, r.memory_mib, r.gpu_milli, r.gpu_type) == (2500, 1024, 250, "V100")
    assert r.gpus == 0.25
    assert r.cpus == 2.5


@pytest.mark.parametrize("field", ["cpu_milli", "memory_mib", "gpu_milli"])
def test_negative_amounts_are_refused(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Resources(**{field: -1})


def test_non_integer_amounts_are_refused() -> None:
    with pytest.raises(ConfigError, match="integer"):
        Resources(gpu_milli=0.5)  # type: ignore[arg-type]


def test_gpu_type_must_match_to_fit() -> None:
    v100 = Resources(gpu_milli=8000, gpu_type="V100")
    assert Resources(gpu_milli=1000, gpu_type="V100").fits_in(v100)
    assert Resources(gpu_milli=1000).fits_in(v100)
    assert not Resources(gpu_milli=1000, gpu_type="K80").fits_in(v100)
    with pytest.raises(ConfigError, match="GPU types"):
        _ = v100 + Resources(gpu_milli=1000, gpu_type="K80")


def test_multiplying_scales_every_amount() -> None:
    assert Resources(cpu_milli=500, gpu_milli=250) * 4 == Resources(cpu_milli=2000, gpu_milli=1000)


@given(capacity=amounts, request=amounts)
def test_taking_out_then_putting_back_restores_capacity(capacity: Resources, request: Resources) -> None:
    if request.fits_in(capacity):
        left = capacity - request
        assert left.cpu_milli >= 0 and left.memory_mib >= 0 and left.gpu_milli >= 0
        assert left + request == capacity
    else:
        with pytest.raises(CapacityError):
            _ = capacity - request


@given(a=amounts, b=amounts)
def test_a_sum_always_holds_its_parts(a: Resources, b: Resources) -> None:
    total = a + b
    assert a.fits_in(total) and b.fits_in(total)
    assert total - b == a
