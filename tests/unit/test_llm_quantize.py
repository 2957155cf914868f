"""Weight quantization: each kernel computes the float32 product within its precision, biases included."""

from __future__ import annotations

import pytest
import torch

from skyline.errors import ConfigError
from skyline.llm.quantize import INT4_GROUP_SIZE, int4_linear, int8_linear, linear_factory

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("make", "tolerance"), [(int8_linear, 0.02), (int4_linear, 0.12)])
@pytest.mark.parametrize("rows", [1, 7])
def test_quantized_linear_is_close_to_float32(make, tolerance: float, rows: int) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    weight = torch.randn(96, 4 * INT4_GROUP_SIZE) * 0.05
    bias = torch.randn(96)
    x = torch.randn(rows, 4 * INT4_GROUP_SIZE)
    expected = x @ weight.T + bias
    got = make(weight, bias)(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    error = (got - expected).norm() / expected.norm()
    assert error < tolerance
    assert error > 0  # it really is quantized


def test_int4_keeps_a_matrix_that_is_not_whole_groups_in_float32() -> None:
    weight = torch.randn(8, INT4_GROUP_SIZE + 3)
    x = torch.randn(2, INT4_GROUP_SIZE + 3)
    assert torch.equal(int4_linear(weight)(x), x @ weight.T)


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(ConfigError, match="quant"):
        linear_factory("fp8")  # type: ignore[arg-type]
