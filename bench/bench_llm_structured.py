"""Constrained JSON decoding: what the token mask costs beside a decode step, and whether outputs are valid.

Requests: SmolLM2-135M-Instruct, native engine, 2 threads; a chat prompt asking for JSON, sampled at
temperature 0.8 with a seed per request, at most 64 new tokens, built by the server's own request
preparation (`skyline.llm.api_prepare.chat_request`) with three ``response_format``s: ``json_object``
(free-form JSON), a flat ``person`` schema (strings, integer, enum, bounded array) and a nested
``order`` schema (array of objects, anyOf, number). Each constraint is wrapped in a timer of its
``allowed`` + ``advance`` calls (the work the engine's sampler waits for, per token).

Measured, at 1 stream and at 8 concurrent streams: constraint milliseconds per token (p50, p99, and the
first request of each schema apart: its automaton starts empty, "cold"), the engine's step time per
token without the constraint's share, their ratio, and the same prompts unconstrained (the reference
throughput). Every output is parsed with ``json.loads`` and validated with ``jsonschema``.
Targets: the warm constraint costs ≤ 10% of a decode step at one stream; 100% of outputs valid.
``python -m bench llm_structured`` records bench/results/llm_structured.json; ``--quick`` (40 tokens, a few
requests) only prints.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

for _name, _value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
    os.environ.setdefault(_name, _value)

import jsonschema  # noqa: E402
import numpy as np  # noqa: E402

from bench.record import record  # noqa: E402

QUICK = "--quick" in sys.argv or os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
THREADS = 2
MAX_TOKENS = 40 if QUICK else 64
PROMPT = "Invent a customer and their order. Answer in JSON."
SCHEMAS: dict[str, dict[str, Any] | None] = {
    "json_object": None,
    "person": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 32}, "age": {"type": "integer"},
                       "role": {"enum": ["admin", "user", "guest"]},
                       "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}},
        "required": ["name", "age", "role"],
    },
    "order": {
        "type": "object",
        "properties": {"customer": {"type": "string", "maxLength": 24},
                       "items": {"type": "array", "maxItems": 3, "items": {
                           "type": "object", "required": ["sku", "qty"],
                           "properties": {"sku": {"type": "string", "maxLength": 10}, "qty": {"type": "integer"},
                                          "price": {"anyOf": [{"type": "number"}, {"type": "null"}]}}}},
                       "paid": {"type": "boolean"}},
        "required": ["customer", "items", "paid"],
    },
}  # fmt: skip


class TimedConstraint:
    """A `TokenConstraint` that records the seconds each token's ``allowed`` + ``advance`` took."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, list[float]()

    def allowed(self) -> Any:
        started = time.perf_counter()
        mask = self.inner.allowed()
        self.seconds.append(time.perf_counter() - started)
        return mask

    def advance(self, token_id: int) -> None:
        started = time.perf_counter()
        self.inner.advance(token_id)
        self.seconds[-1] += time.perf_counter() - started

    def is_complete(self) -> bool:
        return bool(self.inner.is_complete())


def _response_format(name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _run(engine: Any, requests: list[Any]) -> tuple[dict[str, str], list[float]]:
    """Run the requests together; (text by id, wall seconds of every step)."""
    for request in requests:
        engine.add_request(request)
    texts = {r.request_id: "" for r in requests}
    steps: list[float] = []
    while engine.has_unfinished():
        started = time.perf_counter()
        outputs = engine.step()
        steps.append(time.perf_counter() - started)
        for output in outputs:
            texts[output.request_id] += output.text_delta
    return texts, steps


def _measure(engine: Any, name: str, seeds: list[int], streams: int) -> dict[str, Any]:
    from skyline.llm.api_prepare import chat_request

    fields = {"max_tokens": MAX_TOKENS, "temperature": 0.8}
    timers: list[TimedConstraint] = []
    valid, texts_all, steps_all = 0, [], []
    for start in range(0, len(seeds), streams):
        batch = []
        for seed in seeds[start : start + streams]:
            request = chat_request(
                engine, PROMPT, seed=seed, response_format=_response_format(name), **fields
            )
            timers.append(TimedConstraint(request.constraint))
            batch.append(replace(request, request_id=f"{name}-{seed}", constraint=timers[-1]))
        texts, steps = _run(engine, batch)
        steps_all += steps
        for text in texts.values():
            texts_all.append(text)
            try:
                value = json.loads(text)
                jsonschema.validate(value, SCHEMAS[name] or {"type": "object"})
                valid += 1
            except (ValueError, jsonschema.ValidationError):
                pass
    per_token = [s for t in timers[1:] for s in t.seconds]  # warm: the automaton has seen a request
    tokens = sum(len(t.seconds) for t in timers)
    constraint_total = sum(sum(t.seconds) for t in timers)
    step_per_token = (sum(steps_all) - constraint_total) / max(1, len(steps_all))
    return {
        "requests": len(seeds), "valid": valid, "tokens": tokens,
        "constraint_ms_per_token_p50": round(1000 * statistics.median(per_token), 3),
        "constraint_ms_per_token_p99": round(1000 * float(np.percentile(per_token, 99)), 3),
        "constraint_ms_per_token_mean_warm": round(1000 * statistics.fmean(per_token), 3),
        "constraint_ms_first_request_mean": round(1000 * statistics.fmean(timers[0].seconds), 3),
        "step_ms_without_constraint": round(1000 * step_per_token, 2),
        "overhead_warm_per_step": round(streams * statistics.fmean(per_token) / step_per_token, 4),
        "tokens_per_s": round(tokens / sum(steps_all), 2),
        "example": texts_all[0][:200],
    }  # fmt: skip


def _unconstrained(engine: Any, seeds: list[int], streams: int) -> dict[str, Any]:
    from skyline.llm.api_prepare import chat_request

    tokens, seconds = 0, 0.0
    for start in range(0, len(seeds), streams):
        batch = [
            replace(chat_request(engine, PROMPT, seed=s, max_tokens=MAX_TOKENS, temperature=0.8, min_tokens=MAX_TOKENS,
                                 ignore_eos=True), request_id=f"free-{s}")
            for s in seeds[start : start + streams]
        ]  # fmt: skip
        _, steps = _run(engine, batch)
        tokens, seconds = tokens + MAX_TOKENS * len(batch), seconds + sum(steps)
    return {
        "tokens_per_s": round(tokens / seconds, 2),
        "step_ms": round(1000 * seconds / (tokens / streams), 2),
    }


def main() -> None:
    import torch

    from skyline.llm import structured
    from skyline.llm.engine import EngineConfig
    from skyline.llm.loader import load_model
    from skyline.llm.native import NativeEngine

    torch.set_num_threads(THREADS)
    results: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()], "quick": QUICK}
    engine = NativeEngine(
        EngineConfig(threads=THREADS, kv_blocks=1024, max_num_seqs=8), loaded=load_model("smollm2-135m")
    )
    started = time.perf_counter()
    structured.vocabulary_of(engine.tokenizer)
    results["vocabulary_build_s"] = round(time.perf_counter() - started, 2)
    per_case = 2 if QUICK else 12
    for streams in (1, 8):
        seeds = list(range(per_case if streams == 1 else 8 if QUICK else 4 * per_case))
        results[f"unconstrained/c{streams}"] = _unconstrained(
            engine, seeds[: max(streams, per_case)], streams
        )
        for name in SCHEMAS:
            structured._AUTOMATA.clear()  # each schema starts cold: its first request builds the automaton
            row = _measure(engine, name, seeds, streams)
            results[f"{name}/c{streams}"] = row
            print(f"{name}/c{streams}", {k: v for k, v in row.items() if k != "example"}, flush=True)
    one_stream = [results[f"{n}/c1"]["overhead_warm_per_step"] for n in SCHEMAS]
    results["targets"] = {
        "warm_constraint_le_10pct_of_step_at_1_stream": max(one_stream) <= 0.10,
        "all_outputs_valid": all(results[f"{n}/c{c}"]["valid"] == results[f"{n}/c{c}"]["requests"]
                                 for n in SCHEMAS for c in (1, 8)),
    }  # fmt: skip
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print("targets", results["targets"])
    if QUICK:  # a smoke: its figures are too few to keep
        print(json.dumps(results, indent=1))
    else:
        print("recorded", record("llm_structured", results))


if __name__ == "__main__":
    main()
