"""The native engine: paged KV cache, iteration-level batching, prefix caching, chunked prefill.

Each ``step`` asks the scheduler which sequences compute how many tokens, runs them through the model as
one batch, samples a token for every sequence whose prompt is complete, applies the stop conditions and
returns what each request produced. Requests join the running batch and leave it at every step.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import torch

from skyline.errors import ConfigError
from skyline.llm.block_manager import KVCacheManager
from skyline.llm.detokenizer import IncrementalDetokenizer
from skyline.llm.engine import (
    EngineConfig,
    EngineStats,
    FinishReason,
    GenerationRequest,
    RequestOutput,
    check_request,
)
from skyline.llm.loader import LoadedModel, load_model
from skyline.llm.model import PagedDecoder, extract_weights, max_context
from skyline.llm.quantize import linear_factory
from skyline.llm.runner import ModelRunner
from skyline.llm.sampler import Sampler, SampleResult
from skyline.llm.scheduler import Scheduler
from skyline.llm.sequence import Sequence

__all__ = ["NativeEngine", "eos_token_ids"]

log = logging.getLogger(__name__)


def eos_token_ids(loaded: LoadedModel) -> tuple[int, ...]:
    """Every token that ends a sequence: the tokenizer's and the generation config's."""
    found: list[int] = []
    for value in (
        loaded.tokenizer.eos_token_id,
        getattr(loaded.model.generation_config, "eos_token_id", None),
    ):
        if isinstance(value, int):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(int(v) for v in value)
    return tuple(dict.fromkeys(found))


class NativeEngine:
    """The ``"native"`` engine (see :class:`skyline.llm.engine.Engine` for the contract)."""

    def __init__(self, config: EngineConfig, *, loaded: LoadedModel | None = None) -> None:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        owned = loaded is None  # a model loaded here is consumed while its weights are fused
        loaded = loaded or load_model(config.model, cache_dir=config.cache_dir, dtype=config.dtype)
        self.config = config
        self.tokenizer: Any = loaded.tokenizer
        self.model_name = loaded.name
        limit = max_context(loaded.model.config)
        if config.max_model_len is not None and config.max_model_len > limit:
            raise ConfigError(
                f"max_model_len is {config.max_model_len}; model {loaded.name} handles at most {limit}"
            )
        # A request alone must always fit in the KV cache, or preemption could never make room for it.
        self.max_model_len = min(config.max_model_len or limit, config.kv_blocks * config.block_size)
        weights = extract_weights(
            loaded.model, self.max_model_len, linear_factory(config.quant), consume=owned
        )
        self.eos_token_ids = eos_token_ids(loaded)
        del loaded
        gc.collect()  # Hugging Face modules hold reference cycles: free what was not kept now
        self.kv = KVCacheManager(
            config.kv_blocks, config.block_size, enable_caching=config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.kv, max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens
        )
        decoder = PagedDecoder(weights, num_blocks=config.kv_blocks, block_size=config.block_size)
        self.runner = ModelRunner(decoder, self.kv)
        self.sampler = Sampler(eos_token_ids=self.eos_token_ids, vocab_size=weights.vocab_size)
        self._vocab_size = weights.vocab_size
        self._seqs: dict[str, Sequence] = {}
        self._pending: list[RequestOutput] = []  # final outputs of aborted requests, emitted by step()
        self._arrivals = 0
        self._totals = {"prompt": 0, "generated": 0, "finished": 0, "aborted": 0, "failed": 0}

    def add_request(self, request: GenerationRequest) -> None:
        check_request(request, live=self._seqs, max_model_len=self.max_model_len, vocab_size=self._vocab_size)
        prompt = request.prompt_token_ids
        seq = Sequence(request=request, arrival=self._arrivals)
        self._arrivals += 1
        seq.detokenizer = IncrementalDetokenizer(self.tokenizer, prompt, request.params.stop)
        if request.params.seed is not None:
            seq.generator = torch.Generator().manual_seed(request.params.seed)
        self._seqs[request.request_id] = seq
        self._totals["prompt"] += len(prompt)
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> None:
        seq = self._seqs.get(request_id)
        if seq is not None:
            self._finish(seq, "abort")
            self._pending.append(self._output(seq, ()))

    def has_unfinished(self) -> bool:
        return bool(self._seqs or self._pending)

    def step(self) -> list[RequestOutput]:
        outputs, self._pending = self._pending, []
        batch = self.scheduler.schedule()
        if not batch.scheduled:
            return outputs
        try:
            result = self.runner.run(batch.scheduled)
        except Exception as exc:  # the model failed for this batch: fail its requests, keep the engine
            log.exception("model step failed for %d requests", len(batch.scheduled))
            for seq, _ in batch.scheduled:
                self._finish(seq, "error", f"model step failed: {exc}")
                outputs.append(self._output(seq, ()))
            return outputs
        for seq, n in batch.scheduled:
            seq.num_computed += n
            self.kv.cache_full_blocks(seq.request_id, seq.token_ids, seq.num_computed)
        if not result.sampling:  # only prompt chunks that do not end their prompt ran
            return outputs
        samples = self.sampler.sample(result.logits, result.sampling)
        outputs.extend(
            self._advance(seq, sample) for seq, sample in zip(result.sampling, samples, strict=True)
        )
        return outputs

    def _advance(self, seq: Sequence, sample: SampleResult) -> RequestOutput:
        """Append the sampled token and apply the stop conditions."""
        if isinstance(sample, BaseException):
            self._finish(seq, "error", f"sampling failed: {sample}")
            return self._output(seq, ())
        seq.token_ids.append(sample)
        self._totals["generated"] += 1
        params = seq.params
        reason = self._stop_reason(seq, sample)
        if reason is None and (
            seq.num_generated >= params.max_tokens or len(seq.token_ids) >= self.max_model_len
        ):
            reason = "length"
        if reason is not None:
            self._finish(seq, reason, seq.error)
        return self._output(seq, (sample,))

    def _stop_reason(self, seq: Sequence, token: int) -> FinishReason | None:
        params = seq.params
        is_stop_token = token in params.stop_token_ids or (
            token in self.eos_token_ids and not params.ignore_eos
        )
        if is_stop_token and seq.num_generated > params.min_tokens:  # masked before min_tokens anyway
            return "stop"
        detokenizer: IncrementalDetokenizer = seq.detokenizer
        detokenizer.add(token, check_stop=seq.num_generated >= params.min_tokens)
        if detokenizer.stopped:
            return "stop"
        if seq.constraint is not None:
            try:
                seq.constraint.advance(token)
                if seq.constraint.is_complete():
                    return "stop"
            except Exception as exc:  # a faulty constraint fails its own request only
                seq.error = f"constraint failed: {exc}"
                return "error"
        return None

    def _finish(self, seq: Sequence, reason: FinishReason, error: str | None = None) -> None:
        seq.finish(reason, error)
        self.scheduler.remove(seq)
        del self._seqs[seq.request_id]
        key = {"abort": "aborted", "error": "failed"}.get(reason, "finished")
        self._totals[key] += 1

    def _output(self, seq: Sequence, new_tokens: tuple[int, ...]) -> RequestOutput:
        first = bool(new_tokens) and not seq.emitted_first
        seq.emitted_first = seq.emitted_first or first
        return RequestOutput(
            request_id=seq.request_id,
            new_token_ids=new_tokens,
            text_delta=seq.detokenizer.take(final=seq.is_finished),
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            prompt_tokens=seq.num_prompt,
            completion_tokens=seq.num_generated,
            cached_prompt_tokens=seq.num_cached_prompt,
            first_token=first,
            error=seq.error,
        )

    def stats(self) -> EngineStats:
        counters = self.scheduler.counters
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            kv_blocks_total=self.kv.pool.num_blocks,
            kv_blocks_used=self.kv.num_used,
            kv_block_size=self.kv.block_size,
            prefix_cache_query_tokens=counters.prefix_query_tokens,
            prefix_cache_hit_tokens=counters.prefix_hit_tokens,
            preemptions=counters.preemptions,
            prompt_tokens_total=self._totals["prompt"],
            generated_tokens_total=self._totals["generated"],
            requests_finished=self._totals["finished"],
            requests_aborted=self._totals["aborted"],
            requests_failed=self._totals["failed"],
        )

    def close(self) -> None:
        """Free the KV cache (nothing runs in the background); the engine must not be used afterwards."""
        self.runner.decoder.kv_cache = torch.empty(0)
