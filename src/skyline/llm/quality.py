"""How much a quantized engine departs from float32: greedy-token agreement and perplexity.

Agreement is teacher-forced: the float32 engine's greedy continuation is fed to the other engine, which
must predict each of its tokens (argmax) from the same prefix; a first disagreement does not derail
the rest, so the figure counts every position. Perplexity is exp(mean negative log-likelihood) of a text
in windows of ``window`` tokens, each window scored from its own start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq

import torch

from skyline.errors import ConfigError
from skyline.llm.engine import GenerationRequest
from skyline.llm.native import NativeEngine
from skyline.llm.sequence import Sequence

__all__ = ["greedy_agreement", "perplexity", "token_logits"]


@torch.inference_mode()
def token_logits(engine: NativeEngine, token_ids: Seq[int]) -> torch.Tensor:
    """Logits ``[len(token_ids), vocab]``: row i predicts token i + 1. The engine must be idle."""
    if engine.has_unfinished():
        raise ConfigError("token_logits needs an idle engine; finish or abort its requests first")
    if not 0 < len(token_ids) < engine.max_model_len:
        raise ConfigError(f"{len(token_ids)} tokens; score between 1 and {engine.max_model_len - 1}")
    seq = Sequence(
        request=GenerationRequest(request_id="__score__", prompt_token_ids=tuple(token_ids)), arrival=0
    )
    if not engine.kv.allocate(seq.request_id, len(token_ids)):
        raise ConfigError(f"{len(token_ids)} tokens do not fit in the KV cache; score a shorter text")
    try:
        inputs, _ = engine.runner.inputs([(seq, len(token_ids))])
        inputs.logits_rows = None  # every position
        return engine.runner.decoder.forward(inputs)[:, : engine.sampler.vocab_size]
    finally:
        engine.kv.free(seq.request_id)


def greedy_agreement(reference: Seq[Seq[int]], continuations: Seq[Seq[int]], engine: NativeEngine) -> float:
    """Fraction of the reference continuations' tokens that ``engine`` also predicts greedily.

    ``reference[i]`` is a prompt, ``continuations[i]`` the float32 engine's greedy tokens after it.
    """
    agree = total = 0
    for prompt, continuation in zip(reference, continuations, strict=True):
        logits = token_logits(engine, [*prompt, *continuation][:-1])
        predicted = logits[len(prompt) - 1 :].argmax(dim=-1).tolist()
        agree += sum(p == c for p, c in zip(predicted, continuation, strict=True))
        total += len(continuation)
    return agree / total if total else math.nan


def perplexity(
    engine: NativeEngine, token_ids: Seq[int], *, window: int = 512, max_windows: int = 8
) -> float:
    """exp(mean NLL) of ``token_ids`` scored in consecutive windows of ``window`` tokens."""
    nll = 0.0
    count = 0
    for start in range(0, len(token_ids) - 1, window):
        if start // window >= max_windows:
            break
        chunk = list(token_ids[start : start + window])
        if len(chunk) < 2:
            break
        logits = token_logits(engine, chunk).float()
        targets = torch.tensor(chunk[1:])
        nll += float(torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="sum"))
        count += len(chunk) - 1
    if not count:
        raise ConfigError("perplexity needs a text of at least 2 tokens")
    return math.exp(nll / count)
