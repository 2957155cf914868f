"""Demo step: SmolLM2 behind the OpenAI-compatible server: a streamed chat answer, a JSON-schema answer,
16 concurrent clients, and what the server's /metrics says afterwards."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from skyline.cli.demo import DemoContext, StepReport

_PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"},
                   "languages": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3}},
    "required": ["name", "age", "languages"],
}  # fmt: skip
_METRICS = (
    "skyline_llm_time_to_first_token_seconds", "skyline_llm_inter_token_latency_seconds",
    "skyline_llm_e2e_request_latency_seconds",
)  # fmt: skip
_COUNTERS = (
    "skyline_llm_generation_tokens_total", "skyline_llm_prompt_tokens_total", "skyline_llm_prefix_cache_hit_rate",
    "skyline_llm_kv_blocks_total", "skyline_llm_preemptions_total",
)  # fmt: skip


def _streamed_answer(url: str, token: str) -> dict[str, Any]:
    from skyline.llm.api_client import remote_chat

    started, first, text, summary = time.perf_counter(), None, "", None
    pieces = remote_chat(url, "In two sentences, what is a GPU?", token=token, model=None, max_tokens=64,
                         temperature=0.0, seed=None, stream=True)  # fmt: skip
    for piece, final in pieces:
        if piece and first is None:
            first = time.perf_counter() - started
        text, summary = text + piece, final or summary
    return {"text": text, "ttft_s": first, "seconds": time.perf_counter() - started, **(summary or {})}


def _json_answer(url: str, token: str, model: str) -> dict[str, Any]:
    body = {
        "model": model, "messages": [{"role": "user", "content": "Invent a programmer. Answer in JSON."}],
        "max_tokens": 80, "temperature": 0.8, "seed": 7,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": _PERSON}},
    }  # fmt: skip
    answer = httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"}, timeout=300
    )
    answer.raise_for_status()
    content = answer.json()["choices"][0]["message"]["content"]
    return {"text": content, "parsed": json.loads(content)}


def _metrics(url: str, token: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=30).text
    found: dict[str, float] = {}
    for name in (*(f"{m}_sum" for m in _METRICS), *(f"{m}_count" for m in _METRICS), *_COUNTERS):
        match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
        if match:
            found[name] = float(match.group(1))
    return found


def _plot(load: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    labels = ["time to first token", "inter-token", "end-to-end"]
    keys = ["ttft", "itl", "e2e"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for offset, q in ((-0.2, "p50"), (0.2, "p99")):
        ax.bar([i + offset for i in range(3)], [load[f"{k}_{q}_ms"] for k in keys], 0.4, label=q)
    ax.set_xticks(range(3), labels)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title(f"16 streaming clients: {load['output_tokens_per_s']:.0f} output tokens/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _summary(
    chat: dict[str, Any], structured: dict[str, Any], load: dict[str, Any], metrics: dict[str, float]
) -> str:
    def mean_ms(name: str) -> float:
        return 1000 * metrics.get(f"{name}_sum", 0.0) / max(1.0, metrics.get(f"{name}_count", 0.0))

    return "\n".join([
        "`skyline llm serve` put SmolLM2-135M-Instruct (native engine: paged KV cache, continuous batching, prefix "
        "cache) behind the OpenAI API, with bearer tokens. A streamed chat answer "
        f"(first token after {chat['ttft_s'] or 0:.2f} s, {chat['finish_reason']}):", "",
        f"> {' '.join(chat['text'].split())}", "",
        "A `json_schema` answer at temperature 0.8 (constrained decoding: it always parses):", "",
        f"```json\n{structured['text']}\n```", "",
        f"16 concurrent streaming clients for {load['duration_s']:.0f} s, {load['prompt_tokens_mean']:.0f}-token "
        f"prompts, 32 output tokens each, on a shared machine:", "",
        "| requests | errors | output tokens/s | TTFT p50 / p99 ms | inter-token p50 / p99 ms | end-to-end p50 / p99 ms |",
        "|---|---|---|---|---|---|",
        f"| {load['completed']} | {load['errors']} | {load['output_tokens_per_s']:.1f} | {load['ttft_p50_ms']:.0f} / "
        f"{load['ttft_p99_ms']:.0f} | {load['itl_p50_ms']:.0f} / {load['itl_p99_ms']:.0f} | {load['e2e_p50_ms']:.0f} / "
        f"{load['e2e_p99_ms']:.0f} |", "",
        f"The server's /metrics afterwards: {metrics.get('skyline_llm_generation_tokens_total', 0):.0f} tokens "
        f"generated, {metrics.get('skyline_llm_prompt_tokens_total', 0):.0f} prompt tokens prefilled, "
        f"prefix-cache hit rate {metrics.get('skyline_llm_prefix_cache_hit_rate', 0):.0%}, "
        f"{metrics.get('skyline_llm_preemptions_total', 0):.0f} preemptions, mean TTFT "
        f"{mean_ms('skyline_llm_time_to_first_token_seconds'):.0f} ms, mean inter-token "
        f"{mean_ms('skyline_llm_inter_token_latency_seconds'):.0f} ms.",
    ])  # fmt: skip


def run(ctx: DemoContext) -> StepReport:
    from skyline.llm.engine import EngineConfig, create_engine
    from skyline.llm.loadgen import LoadConfig, run_load
    from skyline.llm.server import LLMServerConfig, running_server
    from skyline.security.tokens import TokenAuthority

    tokens = ctx.out_dir / "tokens.json"
    tokens.unlink(missing_ok=True)  # this step's own file from an earlier run
    authority = TokenAuthority(tokens)
    admin = authority.bootstrap_admin() or authority.issue("demo-admin", "admin")
    invoker = authority.issue("demo-client", "invoker")
    config = LLMServerConfig(engine=EngineConfig(kv_blocks=512, max_num_seqs=16), port=0, tokens=tokens)
    engine = create_engine(config.engine_name, config.engine)  # converted once into the cache, then seconds
    with running_server(config, engine) as server:
        chat = _streamed_answer(server.url, invoker)
        structured = _json_answer(server.url, invoker, engine.model_name)
        load_config = LoadConfig(url=server.url, token=invoker, concurrency=16, duration_s=6.0 if ctx.quick else 20.0,
                                 prompt_tokens=64, max_tokens=32)  # fmt: skip
        load = asyncio.run(run_load(load_config)).to_json()
        metrics = _metrics(server.url, admin)
    figure = _plot(load, ctx.out_dir / "llm.png")
    return StepReport(
        title="LLM: an OpenAI-compatible server with continuous batching",
        summary=_summary(chat, structured, load, metrics),
        figures=(figure,),
        metrics={
            "chat": chat,
            "json_schema": structured["parsed"],
            "load_16_clients": load,
            "server_metrics": metrics,
        },
    )
