"""Weight quantization: each kernel computes the float32 product within its precision, biases included."""

from __future__ import annotations

import pytest
import torch

from skyline.errors import ConfigError
from skyline.llm.cpu_kernels import INT8_MAX_ROWS, kernels
from skyline.llm.quantize import INT4_GROUP_SIZE, int4_linear, int8_linear, linear_factory

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("make", "tolerance"), [(int8_linear, 0.02), (int4_linear, 0.12)])
@pytest.mark.parametrize("rows", [1, 7, INT8_MAX_ROWS + 1])  # the kernel, and dequantize-then-matmul
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
    torch.testing.assert_close(int4_linear(weight)(x), x @ weight.T)  # float32 sums, any order: not 4-bit


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(ConfigError, match="quant"):
        linear_factory("fp8")  # type: ignore[arg-type]


def test_int8_kernel_and_dense_fallback_agree() -> None:
    """The two int8 paths (few rows: the kernel; many: dequantized slices) compute the same product."""
    if kernels() is None:
        pytest.skip("no kernels on this machine: one path only")
    torch.manual_seed(1)
    layer = int8_linear(torch.randn(50, 96), torch.randn(50))
    x = torch.randn(2, INT8_MAX_ROWS + 1, 96)  # batched leading dimensions are kept
    whole = layer(x)
    assert whole.shape == (2, INT8_MAX_ROWS + 1, 50)
    torch.testing.assert_close(layer(x[:, :3]), whole[:, :3], rtol=1e-5, atol=1e-5)
