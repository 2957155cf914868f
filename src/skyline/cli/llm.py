"""`skyline llm serve|generate` (an OpenAI-compatible LLM server, one prompt) and `skyline bench llm` (load)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from skyline.cli.output import console, err_console, write_json
from skyline.cli.serve import _check_no_auth, _token_file
from skyline.errors import ConfigError

llm_app = typer.Typer(
    help="Serve and query large language models (OpenAI-compatible API).", no_args_is_help=True
)

_MODEL_HELP = "A known model (smollm2-135m) or a local Hugging Face causal-LM folder."


@llm_app.command("serve")
def serve(
    model: str = typer.Option("smollm2-135m", help=_MODEL_HELP),
    quant: str = typer.Option("none", help="Weight-only quantization: none, int8 or int4."),
    engine: str = typer.Option("native", help="native (paged KV cache) or transformers (the reference)."),
    max_num_seqs: int = typer.Option(16, help="Requests in the running batch at most."),
    kv_blocks: int = typer.Option(1024, help="KV-cache blocks of 16 tokens each, shared by all requests."),
    threads: int | None = typer.Option(None, help="Torch threads (default: torch's choice)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port (0: a free one)."),
    tokens: Path | None = typer.Option(
        None, help="Token file (default: <state>/tokens.json, created with a first admin token)."
    ),
    state: Path | None = typer.Option(None, help="Where the token file is kept (default: ./.skyline)."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth-local-only", help="No tokens at all. Only with a loopback --host."
    ),
    tls_cert: Path | None = typer.Option(
        None, help="Serve HTTPS with this PEM certificate (with --tls-key)."
    ),
    tls_key: Path | None = typer.Option(None, help="The certificate's private key (PEM, mode 0600)."),
    rate_limit: float | None = typer.Option(None, help="Requests per second per token (burst: 2 s worth)."),
    max_waiting: int = typer.Option(64, help="Requests waiting for the running batch before answering 429."),
) -> None:
    """Serve MODEL behind OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models) until interrupted."""
    from skyline.llm.engine import EngineConfig
    from skyline.llm.server import LLMServerConfig, serve_forever
    from skyline.security.tls import uvicorn_ssl_kwargs

    uvicorn_ssl_kwargs(tls_cert, tls_key)  # both or neither, files present, key private: fail before loading
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    if insecure_no_auth:
        _check_no_auth(host, tokens)
    config = LLMServerConfig(  # validated before a token is minted (the token file stands in for now)
        engine=EngineConfig(model=model, quant=quant, max_num_seqs=max_num_seqs, kv_blocks=kv_blocks,  # type: ignore[arg-type]
                            threads=threads),
        engine_name=engine, host=host, port=port, tokens=None if insecure_no_auth else Path("tokens.json"),
        tls=tls, max_waiting=max_waiting, rate_limit_per_s=rate_limit,
    )  # fmt: skip
    if not insecure_no_auth:
        config = replace(config, tokens=_token_file(Path("."), tokens, state))
    console.print(f"loading {model} ({engine} engine, quantization {quant}) ...", soft_wrap=True)
    serve_forever(
        config,
        on_ready=lambda url: console.print(
            f"serving {model} on {url}/v1 (OpenAI-compatible); Ctrl-C stops", soft_wrap=True
        ),
    )


def _local(
    prompt: str, model: str, engine_name: str, quant: str, fields: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    from skyline.llm.api_prepare import chat_request
    from skyline.llm.async_engine import run_to_completion
    from skyline.llm.engine import EngineConfig, create_engine

    err_console.print(f"loading {model} ...")
    engine = create_engine(engine_name, EngineConfig(model=model, quant=quant, kv_blocks=256, max_num_seqs=1))  # type: ignore[arg-type]
    last = None
    try:
        for output in run_to_completion(engine, chat_request(engine, prompt, **fields)):
            last = output
            if output.text_delta:
                yield output.text_delta, None
    finally:
        engine.close()  # transformers' engine keeps a thread that would keep this process alive
    assert last is not None
    usage = {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.completion_tokens}
    yield "", {"finish_reason": last.finish_reason, "usage": usage}


@llm_app.command("generate")
def generate(
    prompt: str = typer.Argument(..., help="The user message."),
    max_tokens: int | None = typer.Option(128, help="Tokens to generate at most."),
    stream: bool = typer.Option(False, help="Print the answer as it is generated."),
    temperature: float = typer.Option(0.7, help="0 = greedy."),
    seed: int | None = typer.Option(None, help="Sampling seed (reproducible answers)."),
    url: str | None = typer.Option(
        None, help="Ask this server (e.g. http://127.0.0.1:8000) instead of a local model."
    ),
    token: str | None = typer.Option(None, help="Bearer token for --url."),
    ca: Path | None = typer.Option(None, help="For https:// URLs: trust this CA certificate."),
    model: str | None = typer.Option(
        None, help=f"{_MODEL_HELP} Default: smollm2-135m, or the server's model."
    ),
    engine: str = typer.Option("native", help="Local only: native or transformers."),
    quant: str = typer.Option("none", help="Local only: none, int8 or int4."),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the answer, finish reason and usage here."
    ),
) -> None:
    """Answer PROMPT with the chat template: a local model, or a running server with --url."""
    from skyline.llm.api_client import remote_chat

    pieces: Iterator[tuple[str, Any]]
    if url is not None and (engine, quant) != ("native", "none"):
        raise ConfigError(
            "--engine and --quant choose a local model; the server at --url has its own: drop them"
        )
    if url is None and (token is not None or ca is not None):
        raise ConfigError("--token and --ca are for a server at --url; a local model needs neither")
    if url is not None:
        pieces = remote_chat(
            url, prompt, token=token, model=model, stream=stream, ssl_context=_ssl_context(url, ca),
            max_tokens=max_tokens, temperature=temperature, seed=seed,
        )  # fmt: skip
    else:
        fields = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        pieces = _local(prompt, model or "smollm2-135m", engine, quant, fields)
    started, text, summary = time.perf_counter(), "", None
    for piece, final in pieces:
        text += piece
        summary = final or summary
        if stream and piece:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write(("" if stream else text) + "\n")
    seconds = time.perf_counter() - started
    payload = {"text": text, **(summary or {}), "seconds": round(seconds, 3)}
    if json_out is not None:
        write_json(json_out, payload)
    usage = payload.get("usage") or {}
    err_console.print(
        f"[{payload.get('finish_reason')}: {usage.get('completion_tokens', '?')} tokens in {seconds:.1f} s]"
    )


def _ssl_context(url: str, ca: Path | None) -> Any:
    if not url.startswith("https://") and ca is None:
        return None
    from skyline.security.tls import client_ssl_context

    return client_ssl_context(ca)  # always verified; the system CAs when no --ca


def bench_llm(
    url: str = typer.Option(..., help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000."),
    concurrency: int = typer.Option(4, help="Closed loop: clients; with --rate or --trace: most in flight."),
    duration: float = typer.Option(30.0, help="Seconds of load (of the trace, with --trace)."),
    rate: float | None = typer.Option(None, help="Open loop: requests per second (Poisson)."),
    trace: Path | None = typer.Option(
        None, help="Replay an Azure LLM trace CSV (arrivals and token lengths)."
    ),
    prompt_tokens: int = typer.Option(128, help="Prompt length of synthetic requests (tokens, about)."),
    max_tokens: int = typer.Option(64, help="Output tokens per request (a trace's are capped here)."),
    prompt_scale: float = typer.Option(0.1, help="--trace: prompt tokens = ContextTokens × this."),
    output_scale: float = typer.Option(1.0, help="--trace: output tokens = GeneratedTokens × this."),
    model: str | None = typer.Option(None, help="Model name (default: the server's first)."),
    token: str | None = typer.Option(None, help="Bearer token, if the server requires one."),
    ca: Path | None = typer.Option(None, help="For https:// URLs: trust this CA certificate."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
) -> None:
    """Load an LLM server with streamed completions; report TTFT, inter-token and end-to-end latency, tokens/s."""
    from skyline.llm.loadgen import LoadConfig, run_load

    if trace is None and (prompt_scale, output_scale) != (0.1, 1.0):
        raise ConfigError(
            "--prompt-scale and --output-scale scale a --trace's lengths; give --trace or drop them"
        )
    if trace is not None and prompt_tokens != 128:
        raise ConfigError(
            "--prompt-tokens sets synthetic prompts; a --trace has its own lengths (--prompt-scale)"
        )
    config = LoadConfig(
        url=url, model=model, concurrency=concurrency, duration_s=duration, rate_per_s=rate, trace=trace,
        prompt_tokens=prompt_tokens, max_tokens=max_tokens, prompt_scale=prompt_scale, output_scale=output_scale,
        token=token,
    )  # fmt: skip
    result = asyncio.run(run_load(config, ssl_context=_ssl_context(url, ca))).to_json()
    if json_out is not None:
        write_json(json_out, result)
    console.print(
        f"{result['mode']}: {result['completed']}/{result['requests']} requests in {result['duration_s']:.1f} s, "
        f"{result['output_tokens_per_s']:.1f} output tokens/s, {result['errors']} errors {result['statuses']}\n"
        f"TTFT p50 {result['ttft_p50_ms']:.0f} ms, p99 {result['ttft_p99_ms']:.0f} ms; inter-token p50 "
        f"{result['itl_p50_ms']:.0f} ms, p99 {result['itl_p99_ms']:.0f} ms; end-to-end p50 "
        f"{result['e2e_p50_ms']:.0f} ms, p99 {result['e2e_p99_ms']:.0f} ms",
        soft_wrap=True,
    )
