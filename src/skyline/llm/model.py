"""The native decoder forward over a paged KV cache (Llama, Qwen2, Mistral: RMSNorm, RoPE, GQA, SwiGLU).

One call computes one engine step for every scheduled sequence at once: their new tokens are flattened
into one ``[T, hidden]`` batch, so each weight matrix is read once per step (a step is memory-bound on a
CPU: the bytes of the weights decide its time). Attention then splits by kind: the decoding sequences
(one query each) attend together over their gathered KV blocks with a padding mask; each prefill chunk
attends causally over its own context. New keys and values are written into the cache slots the block
tables name before attention reads them.

The KV cache of a layer is ``[slots, 2 * kv_heads, head_dim]`` (keys, then values); slot ``s`` is token
``s % block_size`` of block ``s // block_size``. Slot-major, so writing or gathering a token touches one
contiguous row (an index along an inner dimension made PyTorch walk, and page in, the whole cache). One
extra block at the end is the padding block that gathers of short sequences point at (always masked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from skyline.errors import ConfigError
from skyline.llm.cpu_kernels import F32_MAX_ROWS, kernels
from skyline.llm.loader import release_pages

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "DecodeGroup",
    "DecoderWeights",
    "PagedDecoder",
    "PrefillChunk",
    "StepInputs",
]

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
Linear = Callable[[torch.Tensor], torch.Tensor]


def dense(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
    """``x @ weight.T + bias``: a decoding step's few rows on the engine's kernel, more on PyTorch's."""
    kernel = kernels() if weight.dtype == torch.float32 else None
    if kernel is None:
        return lambda x: functional.linear(x, weight, bias)
    weight = weight.contiguous()

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > F32_MAX_ROWS or x.dtype != torch.float32:
            return functional.linear(x, weight, bias)
        out = kernel.f32(x.reshape(rows, x.shape[-1]).contiguous(), weight).reshape(
            *x.shape[:-1], weight.shape[0]
        )
        return out if bias is None else out + bias

    return forward


@dataclass(slots=True)
class LayerWeights:
    input_norm: torch.Tensor
    qkv: Linear  # hidden → (heads + 2 * kv_heads) * head_dim: q, k and v in one matrix
    o: Linear
    post_norm: torch.Tensor
    gate_up: Linear  # hidden → 2 * intermediate: gate and up in one matrix
    down: Linear


@dataclass(slots=True)
class DecoderWeights:
    """The tensors of a decoder, fused for one matmul per projection group."""

    embed: torch.Tensor  # [vocab, hidden]
    layers: list[LayerWeights]
    final_norm: torch.Tensor
    lm_head: Linear
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate: int
    eps: float
    vocab_size: int
    rope_cos: torch.Tensor  # [max_len, head_dim]
    rope_sin_signed: torch.Tensor  # [max_len, head_dim], first half negated (rotate_half as a roll)
    max_len: int


def _architecture(config: Any) -> tuple[int, int, int]:
    """(heads, kv heads, head dim) after checking the config is one the forward implements."""
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(
            f"model type {config.model_type!r} is not supported by the native engine; "
            f"it runs {', '.join(SUPPORTED_ARCHITECTURES)} (use engine 'transformers' for others)"
        )
    if config.hidden_act != "silu":
        raise ConfigError(
            f"hidden_act {config.hidden_act!r} is not supported; the native engine runs SwiGLU (silu)"
        )
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type in ("dynamic", "longrope"):
        raise ConfigError(
            f"rope_type {rope_type!r} depends on the sequence length; use engine 'transformers'"
        )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, getattr(config, "num_key_value_heads", None) or heads, head_dim


def max_context(config: Any) -> int:
    """The longest sequence the forward computes exactly as the model's own: a sliding window caps it."""
    limit = int(config.max_position_embeddings)
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True):
        limit = min(limit, int(window))
    return limit


def extract_weights(
    hf_model: Any, max_len: int, make_linear: Callable[..., Linear] = dense, *, consume: bool = False
) -> DecoderWeights:
    """Fuse and keep the weights of a Hugging Face Llama/Qwen2/Mistral causal LM.

    ``consume`` copies every kept tensor and, once a layer is fused, releases its pages and drops it, so
    the weights are never held twice and nothing refers to the model (nor to the safetensors file it
    maps) afterwards (the caller must not use ``hf_model`` afterwards).
    """
    config = hf_model.config
    heads, kv_heads, head_dim = _architecture(config)

    def own(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone() if consume else t.detach()

    layers = []
    for i, layer in enumerate(hf_model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        biases = [p.bias for p in projections]
        qkv_bias = torch.cat(biases) if all(b is not None for b in biases) else None
        layers.append(
            LayerWeights(
                input_norm=own(layer.input_layernorm.weight),
                qkv=make_linear(torch.cat([p.weight for p in projections]).detach(), qkv_bias),
                o=make_linear(
                    own(attn.o_proj.weight), None if attn.o_proj.bias is None else own(attn.o_proj.bias)
                ),
                post_norm=own(layer.post_attention_layernorm.weight),
                gate_up=make_linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(), None),
                down=make_linear(own(mlp.down_proj.weight), None),
            )
        )
        if consume:
            for tensor in layer.state_dict().values():
                release_pages(tensor)
            hf_model.model.layers[i] = torch.nn.Identity()
    # The model's own rotary module gives cos/sin (with any static scaling: linear, llama3, yarn).
    positions = torch.arange(max_len).unsqueeze(0)
    probe = torch.zeros(1, dtype=hf_model.dtype)
    cos, sin = hf_model.model.rotary_emb(probe, positions)
    half = head_dim // 2
    sin_signed = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
    embed = own(hf_model.model.embed_tokens.weight)
    head = hf_model.lm_head.weight
    tied = head.data_ptr() == hf_model.model.embed_tokens.weight.data_ptr()
    lm_head = make_linear(embed if tied else own(head), None)
    if consume:
        release_pages(hf_model.model.embed_tokens.weight)
        release_pages(head)
    return DecoderWeights(
        embed=embed,
        layers=layers,
        final_norm=own(hf_model.model.norm.weight),
        lm_head=lm_head,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=config.intermediate_size,
        eps=float(config.rms_norm_eps),
        vocab_size=head.shape[0],
        rope_cos=cos[0].contiguous(),
        rope_sin_signed=sin_signed.contiguous(),
        max_len=max_len,
    )


@dataclass(slots=True)
class DecodeGroup:
    """The decoding sequences of a step: token rows ``[0, D)``, one per sequence."""

    num_seqs: int  # D
    gather: torch.Tensor  # [D * L] slot of every context position (padding → the padding block)
    context_len: int  # L, the longest context in the group
    lengths: torch.Tensor  # [D] int64, each sequence's context
    mask: torch.Tensor | None  # [D, 1, 1, L] additive (0 / -inf), None when every context is L long


@dataclass(slots=True)
class PrefillChunk:
    """``num_tokens`` prompt tokens of one sequence at token rows ``[start, start + num_tokens)``."""

    start: int
    num_tokens: int
    gather: torch.Tensor  # [context] slots of the sequence's tokens up to the chunk's end
    mask: torch.Tensor | None  # [num_tokens, context] bool (True = attend); None when causal from 0


@dataclass(slots=True)
class StepInputs:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    slots: torch.Tensor  # [T] cache slot of each token's key/value
    decode: DecodeGroup | None
    prefills: list[PrefillChunk] = field(default_factory=list)
    logits_rows: torch.Tensor | None = None  # [S] rows whose next-token logits are wanted


class PagedDecoder:
    """The forward pass of a decoder-only LM over a paged KV cache of ``num_blocks`` blocks."""

    def __init__(self, weights: DecoderWeights, *, num_blocks: int, block_size: int) -> None:
        self.w = weights
        self.block_size = block_size
        self.pad_block = num_blocks  # the extra, never-allocated block that padding points at
        slots = (num_blocks + 1) * block_size
        shape = (len(weights.layers), slots, 2 * weights.num_kv_heads, weights.head_dim)
        # Zeros, because masked-out slots are still multiplied by 0 and must not hold NaN; from numpy's
        # calloc, because the kernel then hands out zero pages lazily: the cache costs memory (RSS) only
        # as blocks are first used, where torch.zeros would touch every page up front.
        dtype = weights.embed.dtype
        self.kv_cache = torch.from_numpy(np.zeros(shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype))
        self.kernels = kernels() if dtype == torch.float32 else None
        # The norm that follows each layer's MLP: the next layer's input norm, after the last the final one.
        self.next_norms = [layer.input_norm for layer in weights.layers[1:]] + [weights.final_norm]

    @torch.inference_mode()
    def forward(self, inp: StepInputs) -> torch.Tensor:
        """Logits ``[S, vocab]`` for ``inp.logits_rows`` after writing every token's K/V to the cache."""
        w = self.w
        x = functional.embedding(inp.input_ids, w.embed)  # the residual stream, added to in place
        h = self._norm(x, w.layers[0].input_norm)
        for layer, cache, next_norm in zip(w.layers, self.kv_cache, self.next_norms, strict=True):
            h = self._add_norm(x, layer.o(self._attention(layer.qkv(h), cache, inp)), layer.post_norm)
            h = self._add_norm(x, layer.down(self._silu_mul(layer.gate_up(h))), next_norm)
        if inp.logits_rows is not None:
            h = h[inp.logits_rows]
        return w.lm_head(h)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.kernels is not None:
            return self.kernels.rms_norm(x, weight, self.w.eps)
        return functional.rms_norm(x, (x.shape[-1],), weight, self.w.eps)

    def _add_norm(self, x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x += delta`` (the residual connection), then the next sublayer's RMSNorm of ``x``."""
        if self.kernels is not None:
            return self.kernels.add_rms_norm(x, delta, weight, self.w.eps)
        return self._norm(x.add_(delta), weight)

    def _silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        if self.kernels is not None:
            return self.kernels.silu_mul(gate_up)
        inter = self.w.intermediate
        return functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]

    def _rope_store(self, qkv: torch.Tensor, cache: torch.Tensor, inp: StepInputs) -> torch.Tensor:
        """RoPE on the queries and keys; the keys and values into their cache slots; the queries."""
        w = self.w
        heads, kv_heads, hd = w.num_heads, w.num_kv_heads, w.head_dim
        qkv = qkv.view(qkv.shape[0], heads + 2 * kv_heads, hd)
        if self.kernels is not None:
            return self.kernels.rope_store(
                qkv, inp.positions, w.rope_cos, w.rope_sin_signed, cache, inp.slots, heads
            )
        # RoPE as HF computes it: x * cos + rotate_half(x) * sin, with rotate_half's sign folded into sin.
        cos = w.rope_cos[inp.positions].unsqueeze(1)  # [T, 1, head_dim]
        sin = w.rope_sin_signed[inp.positions].unsqueeze(1)
        qk = qkv[:, : heads + kv_heads]
        qk = qk * cos + qk.roll(hd // 2, dims=-1) * sin
        new_kv = torch.cat([qk[:, heads:], qkv[:, heads + kv_heads :]], dim=1)  # [T, 2 * kv_heads, hd]
        cache.index_copy_(0, inp.slots, new_kv)
        return qk[:, :heads]

    def _attention(self, qkv: torch.Tensor, cache: torch.Tensor, inp: StepInputs) -> torch.Tensor:
        heads, hd = self.w.num_heads, self.w.head_dim
        q = self._rope_store(qkv, cache, inp)
        parts = []
        if inp.decode is not None:
            parts.append(self._decode_attention(q[: inp.decode.num_seqs], cache, inp.decode))
        for chunk in inp.prefills:
            parts.append(
                self._prefill_attention(q[chunk.start : chunk.start + chunk.num_tokens], cache, chunk)
            )
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.reshape(out.shape[0], heads * hd)

    def _decode_attention(self, q: torch.Tensor, cache: torch.Tensor, group: DecodeGroup) -> torch.Tensor:
        kv_heads, hd = self.w.num_kv_heads, self.w.head_dim
        d, length = q.shape[0], group.context_len
        if self.kernels is not None:  # reads the blocks where they lie: no gather, no padding
            slots = group.gather.view(d, length)
            return self.kernels.decode_attention(q.contiguous(), cache, slots, group.lengths, hd**-0.5)
        ctx = cache.index_select(0, group.gather).view(d, length, 2 * kv_heads, hd).transpose(1, 2)
        # Grouped-query attention without copying K/V: the query heads that share a KV head are the
        # "query positions" of that head ([D, kv_heads, groups, hd] against [D, kv_heads, L, hd]).
        q = q.view(d, kv_heads, -1, hd)
        out = functional.scaled_dot_product_attention(
            q, ctx[:, :kv_heads], ctx[:, kv_heads:], attn_mask=group.mask
        )
        return out.reshape(d, -1, hd)

    def _prefill_attention(self, q: torch.Tensor, cache: torch.Tensor, chunk: PrefillChunk) -> torch.Tensor:
        kv_heads = self.w.num_kv_heads
        ctx = (
            cache.index_select(0, chunk.gather).transpose(0, 1).unsqueeze(0)
        )  # [1, 2 * kv_heads, context, hd]
        out = functional.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            ctx[:, :kv_heads],
            ctx[:, kv_heads:],
            attn_mask=chunk.mask,
            is_causal=chunk.mask is None,
            enable_gqa=True,
        )
        return out[0].transpose(0, 1)
