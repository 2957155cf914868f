"""Console benchmark: page timings with 10,000 jobs and 100 nodes, and what 10 open consoles cost the
control plane.

Setup: ``skyline cluster up`` (SQLite, fifo, no local agent) in its own process; this process runs the
control-plane benchmark's 100 simulated agents (`bench.bench_cluster.SimulatedAgents`: the real agent
protocol over loopback) and fills the store with 10,000 one-CPU jobs through the REST API, run to
completion by those agents.

Measured, in Debian's headless Chromium:
- the jobs page and a job page: first contentful paint and largest contentful paint (Chromium's paint
  timing; "first meaningful paint" is no longer reported by Chromium, FCP/LCP replace it), the server's
  response time (navigation timing), and bytes transferred (``transferSize`` of the document and every
  resource) with a cold cache and a warm one; medians of ``PAGE_LOADS`` loads;
- the control plane's submit throughput, server CPU per job and p99 submit-to-placed for a burst of
  ``BURST`` jobs (the control-plane benchmark's load generator) with 10 console pages open on the live
  jobs table against none, and with the same pages' requests and event streams opened by a plain HTTP
  client in a process of its own (reconnecting from its last event id as the page's EventSource does; in
  the bench's process it would slow the submitter and the simulated agents) — the server's share of
  the cost alone, since an operator's browser runs on the operator's machine, not on the control
  plane's; rounds interleaved in groups of one per setting (none, browsers, streams, then streams,
  browsers, none, ...): each group gives its own ratio against its none round, and the median of those
  (``paired_ratio``) is what the throughput target reads, beside the ratio of the medians; the p99 target
  reads the p99 of all the setting's jobs (``submit_to_placed_p99_ms_pooled``), since one round's p99 is
  its 10th-slowest job. The streams' client reads raw chunks and keeps only the last event id (a
  browser's parsing is the operator's machine's work).
  Target: the consoles cost ≤ 5% of throughput and of p99. Server CPU per job is reported beside
  throughput because the browsers' share of the 2 cores does not skew it.

The server runs on CPU 0 and everything else (agents, load, the streams' process, the browser) on the
other CPUs: without the split, the load's and the streams' own work took the server's core in some rounds
and not others, and the rounds moved by more than the 5% being measured (0.75×, 0.90× and 1.37× in three
runs on 2026-12-07).

``SKYLINE_BENCH_QUICK=1``: 1,000 jobs, bursts of 200, 2 rounds, 3 loads — a smoke run, not recorded.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.bench_cluster import AGENTS, CONCURRENCY, SimulatedAgents, _burst, _cpu_s, _percentile
from bench.cpus import pin
from bench.lean_http import LeanConnection
from bench.record import record

QUICK = os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
JOBS = 1_000 if QUICK else 10_000
BURST = 200 if QUICK else 1_000
ROUNDS = 2 if QUICK else 8  # per setting, interleaved
PAGE_LOADS = 3 if QUICK else 10
CONSOLES = 10
T = TypeVar("T")

_TIMING = """async () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
  const lcp = await new Promise((resolve) => {
    new PerformanceObserver((list) => { const e = list.getEntries(); resolve(e[e.length - 1].startTime); })
      .observe({type: 'largest-contentful-paint', buffered: true});
    setTimeout(() => resolve(null), 1000);
  });
  const bytes = [nav, ...performance.getEntriesByType('resource')].reduce((s, e) => s + e.transferSize, 0);
  return {fcp_ms: paint['first-contentful-paint'], lcp_ms: lcp, response_ms: nav.responseEnd - nav.requestStart,
          dom_ms: nav.domContentLoadedEventEnd, bytes: bytes};
}"""


class Background:
    """An asyncio loop on a thread: the simulated agents and the load run there, the browser here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 600) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


async def _submit_burst(
    host: str, port: int, headers: dict[str, str], count: int, tag: str
) -> dict[str, Any]:
    connections = [LeanConnection(host, port, headers) for _ in range(CONCURRENCY)]
    ids: list[str] = []

    async def submit(worker: int, i: int) -> None:
        body = {"command": "true", "name": f"{tag}-{i}", "cpus": 1, "memory_mib": 256}
        status, job = await connections[worker].request(
            "POST", "/v1/jobs", body, {"Idempotency-Key": f"{tag}-{i}"}
        )
        assert status in (200, 201), status
        ids.append(job["id"])

    seconds = await _burst(submit, count)
    for connection in connections:
        connection.close()
    return {"seconds": seconds, "ids": ids}


def _wait_settled(url: str, headers: dict[str, str], timeout_s: float = 600) -> None:
    """Until no job is pending, placed or running."""
    deadline = time.monotonic() + timeout_s
    params = [("status", s) for s in ("pending", "placed", "running")] + [("limit", "1")]
    while httpx.get(f"{url}/v1/jobs", params=params, headers=headers, timeout=30).json():
        if time.monotonic() > deadline:
            raise TimeoutError("jobs still unfinished")
        time.sleep(0.5)


def _latencies(url: str, headers: dict[str, str], ids: list[str]) -> list[float]:
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    return [(j["placed_at"] - j["submitted_at"]) * 1000 for j in jobs if j["placed_at"] is not None]


def _signed_in_context(browser: Any, url: str, token: str) -> Any:
    """A fresh context (cold cache) holding the console's session cookie, as the login form sets it."""
    from skyline.cluster.console.session import COOKIE

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [{"name": COOKIE, "value": token, "url": url + "/ui/", "httpOnly": True, "sameSite": "Strict"}]
    )
    return context


def _page_timings(browser: Any, url: str, token: str, path: str) -> dict[str, Any]:
    cold, warm = [], []
    for _ in range(PAGE_LOADS):
        context = _signed_in_context(browser, url, token)
        page = context.new_page()
        for sample in (cold, warm):
            page.goto(url + path, wait_until="load")
            sample.append(page.evaluate(_TIMING))
        context.close()

    def median(samples: list[dict[str, Any]], key: str) -> float | None:
        values = [s[key] for s in samples if s[key] is not None]
        return round(statistics.median(values), 1) if values else None

    return {
        f"{when}_{key}": median(samples, key)
        for when, samples in (("cold", cold), ("warm", warm))
        for key in ("fcp_ms", "lcp_ms", "response_ms", "dom_ms", "bytes")
    }


async def _stream_consoles(url: str, token: str, stop: asyncio.Event, opened: Callable[[], None]) -> int:
    """What ``CONSOLES`` open jobs pages ask of the server, without a browser on this machine: each loads
    the page once, then reads its event stream (as console.js's EventSource does) until ``stop``;
    ``opened`` is called once every stream is open."""
    from skyline.cluster.console.session import COOKIE

    received, streams = 0, 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal received, streams
        (await client.get("/ui/jobs")).raise_for_status()
        last_event: str | None = None
        while not stop.is_set():  # a stream ends after its lifetime; the page reconnects from its last event
            params = {"topics": "jobs", **({"last_event": last_event} if last_event else {})}
            async with client.stream("GET", "/ui/events", params=params) as events:
                streams += 1
                if streams == CONSOLES:
                    opened()
                tail = b""  # the end of the previous chunk: an "id:" line may straddle two chunks
                # No line splitting: a page's parse is not the server's cost.
                async for chunk in events.aiter_raw():
                    received += len(chunk)
                    seen = tail + chunk
                    at = seen.rfind(b"\nid: ")
                    if at >= 0 and (end := seen.find(b"\n", at + 5)) >= 0:
                        last_event = seen[at + 5 : end].decode()
                    tail = seen[-64:]

    async with httpx.AsyncClient(base_url=url, cookies={COOKIE: token}, timeout=None) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(CONSOLES)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return received


def _stream_process(url: str, token: str, ready: Any, stop: Any, received: Any) -> None:
    """The consoles' streams in a process of their own. In the bench's process they would share the event
    loop of the burst's submitter and the simulated agents, and slow those, not only the server; an
    operator's console runs on another machine."""

    async def run() -> int:
        done, loop = asyncio.Event(), asyncio.get_running_loop()

        def relay() -> None:  # the bench's stop (a process event) to this loop's
            stop.wait()
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=relay, daemon=True).start()
        return await _stream_consoles(url, token, done, ready.set)

    received.value = asyncio.run(run())


def _round(
    background: Background,
    server: Any,
    headers: dict[str, str],
    browser: Any,
    token: str,
    setting: str,
    n: int,
) -> dict[str, Any]:
    """One burst with no console, ``CONSOLES`` browser pages on the live jobs table (``browsers``), or the
    same pages' requests and event streams without a browser (``streams``: the server's share alone)."""
    host, port = server.url.removeprefix("http://").split(":")
    pages, streaming = [], None
    spawn = multiprocessing.get_context("spawn")  # not fork: this process runs threads and a browser
    ready, stop, received = spawn.Event(), spawn.Event(), spawn.Value("q", 0)
    if setting == "browsers":
        for _ in range(CONSOLES):
            page = _signed_in_context(browser, server.url, token).new_page()
            page.goto(server.url + "/ui/jobs")
            pages.append(page)
    elif setting == "streams":
        streaming = spawn.Process(target=_stream_process, args=(server.url, token, ready, stop, received))
        streaming.start()
        if not ready.wait(timeout=60):
            raise RuntimeError("the consoles' streams did not open within 60 s")
    # Two idle seconds (streams open, if any): the server's CPU rate between bursts — the agents' beats,
    # the loop, the feed — which the whole-life figure below subtracts.
    idle_before, idle_at = _cpu_s(server.process.pid), time.monotonic()
    time.sleep(2.0)
    sampler = ConsoleShare(server.process.pid)
    cpu_before, started = _cpu_s(server.process.pid), time.monotonic()
    idle_rate = (cpu_before - idle_before) / (started - idle_at)
    burst = background.run(_submit_burst(host, int(port), headers, BURST, f"r{n}-{setting}"))
    server_cpu_s = _cpu_s(server.process.pid) - cpu_before
    _wait_settled(server.url, headers)
    # The burst's whole life (submitted, placed, run, reported succeeded): over the burst alone, the CPU per
    # job depends on how many jobs also finished inside it, so on the burst's own length.
    life_cpu_s = _cpu_s(server.process.pid) - cpu_before - idle_rate * (time.monotonic() - started)
    sampled = sampler.stop()
    for page in pages:
        page.context.close()
    if pages:
        time.sleep(3.0)  # the browser's renderers wind down before the next round starts
    streamed = None
    if streaming is not None:
        stop.set()
        streaming.join(timeout=60)
        streamed = int(received.value)
    latencies = _latencies(server.url, headers, burst["ids"])
    return {
        "setting": setting,
        "consoles": 0 if setting == "none" else CONSOLES,
        "event_bytes_received": streamed,
        "submit_throughput_jobs_per_s": BURST / burst["seconds"],
        "server_cpu_ms_per_job": server_cpu_s / BURST * 1000,
        "server_cpu_ms_per_job_whole_life": life_cpu_s / BURST * 1000,
        "server_idle_cpu_percent": idle_rate * 100,
        "console_share_of_server_cpu": sampled["console_share"],
        "server_cpu_samples": sampled["samples"],
        "submit_to_placed_p50_ms": _percentile(latencies, 50),
        "submit_to_placed_p99_ms": _percentile(latencies, 99),
        "placed": len(latencies),
        "submit_to_placed_ms": [round(x, 2) for x in latencies],  # pooled per setting by `_cost`
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# A sample is the console's when any frame of the stack is its code (pages, the change feed's poller,
# the event streams) or Starlette's StreamingResponse, which writes the streams.
_CONSOLE_FRAME = re.compile(r"\(skyline/cluster/console/|^StreamingResponse\.")


class ConsoleShare:
    """py-spy on the server from the burst until it settled: of the samples of the thread holding the GIL
    (the server's Python CPU), the share whose stack is the console's. Unlike throughput it does not move
    with the machine's other tenants, and py-spy itself runs on the other CPUs."""

    def __init__(self, pid: int) -> None:
        self.out = Path(tempfile.mkstemp(prefix="bench-console-", suffix=".txt")[1])
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw",
             "--output", str(self.out), "--rate", "250", "--gil", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # attached

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        self.process.wait(timeout=60)
        total = console = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                total += int(count)
                console += int(count) * any(_CONSOLE_FRAME.search(f) for f in stack.split(";"))
        self.out.unlink()
        return {"samples": total, "console_share": console / total if total else None}


def _cost(rounds: list[dict[str, Any]], setting: str) -> dict[str, Any]:
    """Medians of ``setting``'s rounds against the rounds with no console."""

    def median(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in rounds if r["setting"] == name))

    groups: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rounds:
        groups.setdefault(r["group"], {})[r["setting"]] = r
    pairs = [(g["none"], g[setting]) for g in groups.values() if setting in g and "none" in g]
    out: dict[str, Any] = {}
    for key in (
        "submit_throughput_jobs_per_s", "server_cpu_ms_per_job", "server_cpu_ms_per_job_whole_life",
        "submit_to_placed_p99_ms",
    ):  # fmt: skip
        none, some = median("none", key), median(setting, key)
        paired = [with_consoles[key] / without[key] for without, with_consoles in pairs]
        out[key] = {
            "no_console": round(none, 2),
            "with_10_consoles": round(some, 2),
            "ratio": round(some / none, 3),  # of the medians
            # The median of each group's own ratio: drift between groups (the store grows a burst per
            # round, the machine's neighbours come and go) cancels within one.
            "paired_ratio": round(statistics.median(paired), 3),
            "paired_ratios": [round(x, 3) for x in paired],
        }
    # The p99 of every job of the setting's rounds: one round's p99 is its 10th-slowest job, which one
    # pause of the machine decides; pooled, it is the 80th.
    pooled = {
        name: _percentile([x for r in rounds if r["setting"] == name for x in r["submit_to_placed_ms"]], 99)
        for name in ("none", setting)
    }
    out["submit_to_placed_p99_ms_pooled"] = {
        "no_console": round(pooled["none"], 2),
        "with_10_consoles": round(pooled[setting], 2),
        "ratio": round(pooled[setting] / pooled["none"], 3),
    }
    shares = [r["console_share_of_server_cpu"] for r in rounds if r["setting"] == setting]
    out["console_share_of_server_cpu"] = {"median": statistics.median(shares), "max": max(shares)}
    out["targets"] = {
        "throughput_cost_le_5pct": out["submit_throughput_jobs_per_s"]["paired_ratio"] >= 0.95,
        "p99_cost_le_5pct": out["submit_to_placed_p99_ms_pooled"]["ratio"] <= 1.05,
        "console_share_of_server_cpu_le_5pct": out["console_share_of_server_cpu"]["max"] <= 0.05,
    }
    return out


def main() -> None:
    from skyline.cluster.console.browser import headless_chromium
    from skyline.testing.cluster import ServerProcess

    state = Path(tempfile.mkdtemp(prefix="bench-console-")) / "state"
    server = ServerProcess(state, extra=("--no-agent", "--policy", "fifo", "--lost-after-s", "120"))
    cpus = sorted(os.sched_getaffinity(0))
    split = {"server": cpus[:1], "everything_else": cpus[1:]} if len(cpus) > 1 else None
    if split is not None:  # before the agents' thread, the streams' process and the browser start
        pin(server.process.pid, set(split["server"]))
        pin(os.getpid(), set(split["everything_else"]))
    background = Background()
    try:
        assert server.admin_token is not None
        token = server.admin_token
        headers = {"Authorization": f"Bearer {token}"}
        agent_token = httpx.post(
            server.url + "/v1/tokens", json={"subject": "sim", "role": "agent"}, headers=headers
        ).json()["token"]
        host, port = server.url.removeprefix("http://").split(":")
        agents = SimulatedAgents(host, int(port), agent_token)
        agents_done = asyncio.run_coroutine_threadsafe(agents.run(), background.loop)
        while len(httpx.get(server.url + "/v1/nodes", headers=headers).json()) < AGENTS:
            time.sleep(0.2)
        started = time.monotonic()
        fill = background.run(_submit_burst(host, int(port), headers, JOBS, "fill"))
        _wait_settled(server.url, headers)
        print(f"store filled: {JOBS} jobs in {time.monotonic() - started:.0f} s", flush=True)
        with headless_chromium() as browser:
            pages = {
                "jobs_page": _page_timings(browser, server.url, token, "/ui/jobs"),
                "job_page": _page_timings(browser, server.url, token, f"/ui/jobs/{fill['ids'][JOBS // 2]}"),
            }
            print(pages, flush=True)
            rounds = []
            # Groups of one round per setting, in mirrored order: each group's rounds ran close together
            # (the same store size, the same neighbours on the machine), so costs are read within a group.
            order = ("none", "browsers", "streams", "streams", "browsers", "none")
            for n in range(3 * ROUNDS):
                rounds.append(
                    _round(background, server, headers, browser, token, order[n % 6], n) | {"group": n // 3}
                )
                print(rounds[-1], flush=True)
        background.loop.call_soon_threadsafe(agents.stop.set)
        agents_done.result(timeout=30)
    finally:
        background.stop()
        server.stop()
    results = {
        "setup": {
            "jobs_in_store": JOBS, "nodes": AGENTS, "burst": BURST, "consoles": CONSOLES, "page_loads": PAGE_LOADS,
            "browser": "Debian chromium, headless, one context per cold load",
            "cpus": split or "one CPU: not split",
            "note": "the server on one core, the 100 simulated agents, the load, the streams and the browser on "
                    "the other ('cpus'); 'streams' opens the same pages' requests and event streams without a browser, the "
                    "server's share of the cost alone (an operator's browser runs on the operator's machine)",
        },
        "pages": pages,
        "control_plane": {
            "rounds": rounds,
            "browsers_on_this_machine": _cost(rounds, "browsers"),
            "streams_without_browser": _cost(rounds, "streams"),
        },
    }  # fmt: skip
    for r in rounds:  # pooled above; 24,000 numbers would bloat the record
        del r["submit_to_placed_ms"]
    print(results)
    if QUICK:
        print("quick run: not recorded")
    else:
        print(record("console", results))
