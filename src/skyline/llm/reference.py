"""The ``"transformers"`` engine: transformers' own continuous batching behind the engine port.

It is the reference the native engine is tested and benchmarked against. transformers runs its
``ContinuousBatchingManager`` (paged attention, a FIFO scheduler, block sharing) in a background thread;
``step`` collects what that thread produced since the last call (waiting briefly for something when
requests are in flight). Sampling parameters map onto its per-request logits processors (greedy is
``top_k=1``); ``ignore_eos`` and ``stop_token_ids`` onto its per-request end-of-sequence ids; stop strings
are found here and cancel the request. What it cannot do is refused with a ConfigError rather than
ignored: per-request seeds, ``min_tokens``, constraints and priorities. It does not report prefix-cache
hits (its counters stay 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from skyline.errors import ConfigError
from skyline.llm.detokenizer import IncrementalDetokenizer
from skyline.llm.engine import (
    EngineConfig,
    EngineStats,
    FinishReason,
    GenerationRequest,
    RequestOutput,
    check_request,
)
from skyline.llm.loader import load_model
from skyline.llm.model import max_context
from skyline.llm.native import eos_token_ids

__all__ = ["TransformersEngine"]

_POLL_S = 0.05  # how long step() waits for the background thread when nothing is ready


@dataclass(slots=True)
class _Tracked:
    request: GenerationRequest
    eos: tuple[int, ...]
    detokenizer: IncrementalDetokenizer
    emitted: list[int] = field(default_factory=list)


class TransformersEngine:
    """transformers' continuous batching as an :class:`~skyline.llm.engine.Engine`."""

    def __init__(self, config: EngineConfig) -> None:
        import torch
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        if config.quant != "none":
            raise ConfigError(
                f"engine 'transformers' runs the model as loaded; quant {config.quant!r} needs 'native'"
            )
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        loaded = load_model(config.model, cache_dir=config.cache_dir, dtype=config.dtype)
        self.tokenizer: Any = loaded.tokenizer
        self.model_name = loaded.name
        self.eos_token_ids = eos_token_ids(loaded)
        self.max_model_len = min(
            config.max_model_len or max_context(loaded.model.config), config.kv_blocks * config.block_size
        )
        self._vocab_size = int(loaded.model.config.vocab_size)
        self._block_size = config.block_size
        # Processors exist only for parameters whose default is not neutral; every request passes its own.
        generation = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=True, temperature=0.5, top_k=50, top_p=0.9, eos_token_id=list(self.eos_token_ids) or -1
        )
        cb_config = ContinuousBatchingConfig(
            num_blocks=config.kv_blocks,
            page_size=config.block_size,
            max_batch_tokens=config.max_num_batched_tokens,
            max_requests_per_batch=config.max_num_seqs,
            per_request_processors=True,
            allow_block_sharing=config.enable_prefix_caching,
        )
        logging.getLogger("ContinuousBatchingLogger").setLevel(logging.ERROR)
        self._manager = loaded.model.init_continuous_batching(
            generation_config=generation, continuous_batching_config=cb_config
        )
        self._manager.start()
        self._tracked: dict[str, _Tracked] = {}
        self._pending: list[RequestOutput] = []
        self._totals = {"prompt": 0, "generated": 0, "finished": 0, "aborted": 0, "failed": 0}

    def add_request(self, request: GenerationRequest) -> None:
        params = request.params
        refused = {
            "seed": params.seed is not None,
            "min_tokens": params.min_tokens > 0,
            "constraint": request.constraint is not None,
            "priority": request.priority != 0,
        }
        if any(refused.values()):
            names = ", ".join(k for k, v in refused.items() if v)
            raise ConfigError(f"engine 'transformers' does not support {names}; use engine 'native'")
        check_request(
            request, live=self._tracked, max_model_len=self.max_model_len, vocab_size=self._vocab_size
        )
        prompt = request.prompt_token_ids
        eos = tuple(params.stop_token_ids) + (() if params.ignore_eos else self.eos_token_ids)
        sampling = (
            {"top_k": 1, "temperature": 1.0, "top_p": 1.0}
            if params.greedy
            else {
                "top_k": params.top_k or self._vocab_size,
                "temperature": params.temperature,
                "top_p": params.top_p,
            }
        )
        max_new = min(params.max_tokens, self.max_model_len - len(prompt))
        self._tracked[request.request_id] = _Tracked(
            request=request, eos=eos, detokenizer=IncrementalDetokenizer(self.tokenizer, prompt, params.stop)
        )
        self._totals["prompt"] += len(prompt)
        self._manager.add_request(
            list(prompt),
            request_id=request.request_id,
            max_new_tokens=max_new,
            streaming=True,
            eos_token_id=list(eos) or -1,
            **sampling,
        )

    def abort(self, request_id: str) -> None:
        tracked = self._tracked.pop(request_id, None)
        if tracked is not None:
            self._manager.cancel_request(request_id)
            self._totals["aborted"] += 1
            self._pending.append(self._output(tracked, [], "abort"))

    def has_unfinished(self) -> bool:
        return bool(self._tracked or self._pending)

    def step(self) -> list[RequestOutput]:
        outputs, self._pending = self._pending, []
        results = []
        result = self._manager.get_result(timeout=_POLL_S if self._tracked and not outputs else 0)
        while result is not None:
            results.append(result)
            result = self._manager.get_result(timeout=0)
        for result in results:
            tracked = self._tracked.get(result.request_id)
            if tracked is not None:  # outputs of aborted or stopped requests are dropped
                outputs.append(self._advance(tracked, result))
        return outputs

    def _advance(self, tracked: _Tracked, result: Any) -> RequestOutput:
        from transformers.generation.continuous_batching.requests import RequestStatus

        new = list(result.generated_tokens[len(tracked.emitted) :])
        tracked.emitted.extend(new)
        self._totals["generated"] += len(new)
        reason: FinishReason | None = None
        for token in new:
            if token not in tracked.eos:
                tracked.detokenizer.add(token)
        if tracked.detokenizer.stopped:
            reason = "stop"
            self._manager.cancel_request(tracked.request.request_id)
        elif result.status == RequestStatus.FAILED:
            reason = "error"
        elif result.status == RequestStatus.FINISHED:
            reason = "stop" if tracked.emitted and tracked.emitted[-1] in tracked.eos else "length"
        if reason is not None:
            del self._tracked[tracked.request.request_id]
            self._totals["failed" if reason == "error" else "finished"] += 1
        return self._output(tracked, new, reason, result.error)

    def _output(
        self, tracked: _Tracked, new: list[int], reason: FinishReason | None, error: str | None = None
    ) -> RequestOutput:
        return RequestOutput(
            request_id=tracked.request.request_id,
            new_token_ids=tuple(new),
            text_delta=tracked.detokenizer.take(final=reason is not None),
            finished=reason is not None,
            finish_reason=reason,
            prompt_tokens=len(tracked.request.prompt_token_ids),
            completion_tokens=len(tracked.emitted),
            cached_prompt_tokens=0,
            first_token=bool(new) and len(tracked.emitted) == len(new),
            error=error if reason == "error" else None,
        )

    def stats(self) -> EngineStats:
        processor = self._manager.batch_processor
        cache = processor.cache if processor is not None else None
        total = int(cache.num_blocks) if cache is not None else 0
        free = float(cache.compute_free_capacity(relative=True)) if cache is not None else 1.0
        scheduler = processor.scheduler if processor is not None else None
        return EngineStats(
            running=len(scheduler.active_requests) if scheduler is not None else 0,
            waiting=len(scheduler.waiting_requests) if scheduler is not None else 0,
            kv_blocks_total=total,
            kv_blocks_used=round(total * (1 - free)),
            kv_block_size=self._block_size,
            prefix_cache_query_tokens=0,
            prefix_cache_hit_tokens=0,
            preemptions=0,
            prompt_tokens_total=self._totals["prompt"],
            generated_tokens_total=self._totals["generated"],
            requests_finished=self._totals["finished"],
            requests_aborted=self._totals["aborted"],
            requests_failed=self._totals["failed"],
        )

    def close(self) -> None:
        """Stop transformers' background thread."""
        self._manager.stop(block=True, timeout=10)
