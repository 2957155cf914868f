"""The decoding step's C kernels against PyTorch (or float64) on every remainder path of their loops."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional

from skyline.llm.cpu_kernels import F32_MAX_ROWS, Kernels, kernels
from skyline.llm.model import dense

pytestmark = pytest.mark.unit


def _kernel() -> Kernels:
    found = kernels()
    if found is None:  # CI's machine has AVX2 and gcc: there the kernel must build
        assert os.environ.get("CI") != "true", "the int8 kernel did not build (see the log's warning)"
        pytest.skip("no matmul kernels on this machine")
    return found


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 9), n_out=st.integers(1, 40), n_in=st.sampled_from([1, 7, 8, 17, 40, 64, 577]))
def test_kernels_equal_the_matmul_in_float64(rows: int, n_out: int, n_in: int) -> None:
    """Every remainder path (rows not a multiple of 4; inputs not a multiple of 32, 8) against float64."""
    generator = torch.Generator().manual_seed(rows * 1000 + n_out * 10 + n_in)
    q = torch.randint(-127, 128, (n_out, n_in), dtype=torch.int8, generator=generator)
    scale = torch.rand(n_out, generator=generator) + 0.01
    w = torch.randn(n_out, n_in, generator=generator)
    x = torch.randn(rows, n_in, generator=generator)
    for got, weight in ((_kernel().int8(x, q, scale), q.double() * scale.double()[:, None]),
                        (_kernel().f32(x, w), w.double())):  # fmt: skip
        assert got.shape == (rows, n_out) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), x.double() @ weight.T, rtol=1e-5, atol=1e-5 * n_in)


def test_kernels_refuse_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        _kernel().int8(torch.randn(2, 8), torch.zeros(3, 9, dtype=torch.int8), torch.ones(3))
    with pytest.raises(ValueError, match="does not fit"):
        _kernel().f32(torch.randn(8, 2).T, torch.zeros(3, 8))  # not contiguous
    with pytest.raises(ValueError, match="scale"):
        _kernel().int8(torch.randn(2, 8), torch.zeros(3, 8, dtype=torch.int8), torch.ones(4))


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    kv_heads=st.integers(1, 3),
    groups=st.integers(1, 3),
    head_dim=st.sampled_from([4, 8, 12, 64]),
)
def test_decode_attention_equals_sdpa_over_the_gathered_context(
    lengths: list[int], kv_heads: int, groups: int, head_dim: int
) -> None:
    """Scattered slots, mixed lengths, grouped queries: each sequence as PyTorch attends it alone."""
    generator = torch.Generator().manual_seed(sum(lengths) * 100 + kv_heads * 10 + groups + head_dim)
    rows, longest, heads = 200, max(lengths), kv_heads * groups
    cache = torch.randn(rows, 2 * kv_heads, head_dim, generator=generator)
    slots = torch.stack([torch.randperm(rows, generator=generator)[:longest] for _ in lengths])
    q = torch.randn(len(lengths), heads, head_dim, generator=generator)
    got = _kernel().decode_attention(q, cache, slots, torch.tensor(lengths), head_dim**-0.5)
    for d, length in enumerate(lengths):
        ctx = cache[slots[d, :length]]  # [L, 2 * kv_heads, hd]
        k = ctx[:, :kv_heads].repeat_interleave(groups, dim=1).transpose(0, 1)  # [heads, L, hd]
        v = ctx[:, kv_heads:].repeat_interleave(groups, dim=1).transpose(0, 1)
        expected = functional.scaled_dot_product_attention(q[d].unsqueeze(1), k, v).squeeze(1)
        torch.testing.assert_close(got[d], expected, rtol=1e-5, atol=1e-5)


def test_decode_attention_refuses_what_would_read_outside_the_cache() -> None:
    cache, q = torch.randn(10, 2, 8), torch.randn(1, 1, 8)
    with pytest.raises(ValueError, match="outside the cache"):
        _kernel().decode_attention(q, cache, torch.tensor([[3, 10]]), torch.tensor([2]), 1.0)
    with pytest.raises(ValueError, match="length"):
        _kernel().decode_attention(q, cache, torch.tensor([[3, 4]]), torch.tensor([0]), 1.0)
    with pytest.raises(ValueError, match="do not fit"):
        _kernel().decode_attention(
            q, cache, torch.tensor([[3, 4]], dtype=torch.int32), torch.tensor([2]), 1.0
        )


@pytest.mark.parametrize("shape", [(1, 576), (3, 2, 13), (0, 8)])
def test_rms_norm_equals_pytorch(shape: tuple[int, ...]) -> None:
    torch.manual_seed(3)
    x, weight = torch.randn(shape) * 3, torch.randn(shape[-1])
    expected = functional.rms_norm(x, (shape[-1],), weight, 1e-5)
    torch.testing.assert_close(_kernel().rms_norm(x, weight, 1e-5), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [0, 1, 5, F32_MAX_ROWS + 1])
def test_dense_equals_pytorch_on_either_side_of_the_kernel_limit(rows: int) -> None:
    torch.manual_seed(2)
    weight, bias, x = torch.randn(40, 72), torch.randn(40), torch.randn(rows, 72)
    torch.testing.assert_close(dense(weight, bias)(x), functional.linear(x, weight, bias))


@settings(max_examples=30, deadline=None)
@given(tokens=st.integers(1, 6), kv_heads=st.integers(1, 3), groups=st.integers(1, 3),
       head_dim=st.sampled_from([2, 6, 16, 64]))  # fmt: skip
def test_rope_store_equals_the_pytorch_rotation_and_cache_write(
    tokens: int, kv_heads: int, groups: int, head_dim: int
) -> None:
    generator = torch.Generator().manual_seed(tokens * 1000 + kv_heads * 100 + groups * 10 + head_dim)
    heads, half = kv_heads * groups, head_dim // 2
    qkv = torch.randn(tokens, heads + 2 * kv_heads, head_dim, generator=generator)
    cos, sin = torch.randn(50, head_dim, generator=generator), torch.randn(50, head_dim, generator=generator)
    positions = torch.randint(0, 50, (tokens,), generator=generator)
    slots = torch.randperm(20, generator=generator)[:tokens]
    cache = torch.randn(20, 2 * kv_heads, head_dim, generator=generator)
    expected_cache = cache.clone()
    qk = qkv[:, : heads + kv_heads]
    rotated = qk * cos[positions, None] + qk.roll(half, dims=-1) * sin[positions, None]
    expected_cache[slots] = torch.cat([rotated[:, heads:], qkv[:, heads + kv_heads :]], dim=1)
    q = _kernel().rope_store(qkv, positions, cos, sin, cache, slots, heads)
    torch.testing.assert_close(q, rotated[:, :heads], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache, expected_cache, rtol=1e-5, atol=1e-5)


def test_rope_store_refuses_a_position_or_slot_out_of_range_and_writes_nothing() -> None:
    qkv, table, cache = torch.randn(1, 3, 8), torch.randn(4, 8), torch.randn(6, 2, 8)
    before = cache.clone()
    for position, slot in ((4, 0), (0, 6), (-1, 0)):
        with pytest.raises(ValueError, match="out"):
            _kernel().rope_store(qkv, torch.tensor([position]), table, table, cache, torch.tensor([slot]), 1)
    assert torch.equal(cache, before)
    with pytest.raises(ValueError, match="do not fit"):
        _kernel().rope_store(
            qkv, torch.tensor([0], dtype=torch.int32), table, table, cache, torch.tensor([0]), 1
        )


@pytest.mark.parametrize("inter", [1, 8, 13, 1536])
def test_silu_mul_equals_pytorch_including_large_inputs(inter: int) -> None:
    generator = torch.Generator().manual_seed(inter)
    gate_up = torch.randn(3, 2 * inter, generator=generator) * 8
    gate_up[0, :inter] = torch.linspace(-120, 120, inter)  # exp(-g) overflows float32 below -88
    expected = functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]
    torch.testing.assert_close(_kernel().silu_mul(gate_up), expected, rtol=2e-6, atol=1e-6)


def test_add_rms_norm_adds_in_place_and_normalizes_the_sum() -> None:
    torch.manual_seed(4)
    x, delta, weight = torch.randn(3, 13), torch.randn(3, 13), torch.randn(13)
    total = x + delta
    y = _kernel().add_rms_norm(x, delta, weight, 1e-6)
    torch.testing.assert_close(x, total)
    torch.testing.assert_close(y, functional.rms_norm(total, (13,), weight, 1e-6), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        _kernel().add_rms_norm(x, delta[:2], weight, 1e-6)
    with pytest.raises(ValueError, match="does not fit weight"):
        _kernel().add_rms_norm(x, delta, weight[:12], 1e-6)
    torch.testing.assert_close(x, total)  # a refused call adds nothing


def test_a_decoder_step_with_the_kernels_equals_the_pytorch_path() -> None:
    """A prefill then a decoding step of a random tiny Llama: same logits and KV cache either way."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from skyline.llm.model import DecodeGroup, PagedDecoder, PrefillChunk, StepInputs, extract_weights

    _kernel()
    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    weights = extract_weights(LlamaForCausalLM(config).eval(), 32)
    with_kernels, without = (PagedDecoder(weights, num_blocks=4, block_size=4) for _ in range(2))
    without.kernels = None
    prompt = torch.tensor([5, 17, 42, 8, 3])
    steps = [
        StepInputs(input_ids=prompt, positions=torch.arange(5), slots=torch.arange(5), decode=None,
                   prefills=[PrefillChunk(start=0, num_tokens=5, gather=torch.arange(5), mask=None)],
                   logits_rows=torch.tensor([4])),
        StepInputs(input_ids=torch.tensor([60]), positions=torch.tensor([5]), slots=torch.tensor([5]),
                   decode=DecodeGroup(num_seqs=1, gather=torch.arange(6), context_len=6,
                                      lengths=torch.tensor([6]), mask=None)),
    ]  # fmt: skip
    for step in steps:
        torch.testing.assert_close(with_kernels.forward(step), without.forward(step), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(with_kernels.kv_cache, without.kv_cache, rtol=1e-5, atol=1e-6)
