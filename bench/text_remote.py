"""What genloom costs in front of an engine server: `transformers serve --continuous-batching` called
directly against the same server driven by genloom's text worker (`GENLOOM_TEXT_ENGINE_URL`), whole
stack in between (HTTP → gateway → Kafka → preparation stages → Kafka → text worker → engine server →
Kafka → moderation gate → Redis → SSE; the gate writes what it releases into the replay logs itself).

The engine is the strongest peer on this machine at its best: transformers 5.24's continuous batching
from the virtual environment `bench/text_peer.py` makes (its transformers conflicts with genloom's pin),
started once and left running. One client (the official openai SDK, streaming, greedy) for every way,
the same prompts and model folder (SmolLM2-135M-Instruct). Rounds alternate: direct with nothing of
genloom running, then through a freshly started genloom stack with its defaults (preparation stages,
moderation gate) but the semantic cache (it would answer the repeated greedy prompts without the
engine), then, as a labelled extra row, a stack with every stage and the gate off (the transport alone:
what the Kafka hops and the edge cost, without the work the defaults do on every job). Each stack is
stopped before the next way runs. Each round measures:

- one stream at a time (`--requests`): time to first token p50;
- `--concurrency` concurrent streams, `--max-tokens` each: output tokens/s (counted by re-tokenising
  the answers) and time to first token p50.

The issue's targets: under 5% of throughput at 16 concurrent and under 15 ms TTFT p50 added.

Writes ``bench/results/text_remote.json`` (or ``--out``).

    python bench/text_remote.py [--rounds 2] [--requests 12] [--concurrency 16] [--max-tokens 32]
                                [--ab VAR=VALUE ...] [--out FILE]

`--ab` adds a way to every round, as a labelled extra row: the defaults with those settings (the change a
commit makes, turned off, measured beside it in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai  # noqa: E402
from text_peer import peer_python, peer_version, start_peer  # noqa: E402
from text_platform import FAST, MODEL, PROMPTS, _sdk_stream, concurrent, p50, wait_ready  # noqa: E402

from bench.common import cpu_model  # noqa: E402
from infra.procs import free_port, stop_process  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.jobstore import JobStore  # noqa: E402
from schemas.events import Started, TokenDelta  # noqa: E402
from schemas.requests import scoped_job_id  # noqa: E402
from infra.stack import Stack  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "text_remote.json"
TENANT = "bench"


async def sequential(url: str, key: str, model: str, n: int, max_tokens: int, redis_url: str | None = None) -> dict:
    """One request at a time. Through genloom (`redis_url` given), the job's own event timestamps split
    each time to first token: submit to the worker's `started`, `started` to the worker's first token
    (the upstream call: the engine server's own time to first token and the worker's client), and that
    token to the client (the moderation gate, Redis, gateway, SSE)."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)
    redis = connect(redis_url) if redis_url else None
    store = JobStore(redis) if redis is not None else None
    ttft, before, upstream, after = [], [], [], []
    for i in range(n):
        wall, start = time.time(), time.perf_counter()
        first, last, _, job_id = await _sdk_stream(client, model, PROMPTS[i % len(PROMPTS)], max_tokens)
        first = first or last or time.perf_counter()  # no content at all: the stream's end
        ttft.append(first - start)
        if store is not None:
            events = [entry.event for entry in await store.entries(scoped_job_id(TENANT, job_id))]
            started = next(e.ts for e in events if isinstance(e, Started))
            token = next(e.ts for e in events if isinstance(e, TokenDelta))
            before.append(started - wall)
            upstream.append(token - started)
            after.append(wall + (first - start) - token)
    await client.close()
    out = {"requests": n, "ttft_p50_ms": p50(ttft) * 1000}
    if store is not None:
        await redis.aclose()
        out |= {"submit_to_started_p50_ms": p50(before) * 1000, "started_to_first_token_p50_ms": p50(upstream) * 1000,
                "token_to_client_p50_ms": p50(after) * 1000}
    return out


#: the stack with nothing on the job's path but the transport (the labelled extra row)
TRANSPORT_ONLY = {"GENLOOM_GATEWAY_ROUTE": "direct", "GENLOOM_MODERATION_CLASSIFIER": "none"}


def start_genloom_in_front(log_dir: Path, engine_url: str, engine_model: str, concurrency: int,
                           extra: dict[str, str]) -> tuple[Stack, str, str]:
    port, key = free_port(), "bench-key"
    stack = Stack(log_dir=log_dir, env={  # the defaults (preparation stages, moderation) but the cache:
        "GENLOOM_SEMANTIC_CACHE_ENABLED": "false",  # a repeated greedy prompt would be answered without the engine
        **extra,
        **FAST, "GENLOOM_API_KEYS": f"{key}:{TENANT}",
        "GENLOOM_TEXT_ENGINE_URL": engine_url.removesuffix("/v1"), "GENLOOM_TEXT_ENGINE_MODEL": engine_model,
        "GENLOOM_TEXT_ENGINE_MAX_CONCURRENCY": str(concurrency), "GENLOOM_TEXT_MAX_BATCH_SIZE": str(concurrency)})
    stack.start_backends()
    stack.add_core()
    stack.add("worker-text", ["workers", "text"])
    stack.add("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(port)], port=port)
    stack.start()
    return stack, f"http://127.0.0.1:{port}/v1", key


def measure(url: str, key: str, model: str, args: argparse.Namespace, redis_url: str | None = None) -> dict:
    asyncio.run(wait_ready(url, key, model))
    return {"sequential": asyncio.run(sequential(url, key, model, args.requests, args.max_tokens, redis_url)),
            "concurrent": asyncio.run(concurrent(url, key, model, args.concurrency, args.max_tokens))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--engine-dtype", default="float32", help="the engine server's --dtype")
    parser.add_argument("--peer-version", default="5.24.0")
    parser.add_argument("--peer-dir", type=Path, default=Path.home() / ".cache" / "genloom" / "peers")
    parser.add_argument("--out", type=Path, default=OUT, help="the results file (another CPU's run kept beside the main one)")
    parser.add_argument("--ab", action="append", default=[], metavar="VAR=VALUE",
                        help="also run, each round, the defaults with these settings (a labelled extra row)")
    args = parser.parse_args()
    ab = dict(a.split("=", 1) for a in args.ab)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the servers below are stopped on a kill too

    python = peer_python(args.peer_dir, args.peer_version)
    version = peer_version(python)
    log_dir = Path("/tmp/genloom-bench-logs")
    log_dir.mkdir(exist_ok=True)
    results: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu_model(),
                     "peer": "transformers serve --continuous-batching", "peer_version": version,
                     "engine_dtype": args.engine_dtype, "max_tokens": args.max_tokens,
                     "concurrency": args.concurrency, "load_start": os.getloadavg()[0], "rounds": []}
    if ab:
        results["ab"] = ab
    print(f"transformers serve --continuous-batching ({version}); load {results['load_start']:.2f}", flush=True)
    os.environ["OMP_NUM_THREADS"] = "1"  # the engine server: one thread, the other core for the client or the stack
    proc, engine_url, engine_model = start_peer(python, log_dir, args.engine_dtype)
    try:
        for r in range(args.rounds):
            direct = measure(engine_url, "none", engine_model, args)
            print(f"round {r + 1} direct:  {direct}", flush=True)
            row = {"direct": direct}
            for way, extra in (("genloom", {}), ("transport", TRANSPORT_ONLY)) + ((("ab", ab),) if ab else ()):
                stack, url, key = start_genloom_in_front(log_dir, engine_url, engine_model, args.concurrency, extra)
                try:
                    row[way] = measure(url, key, MODEL, args, stack.redis_url)
                finally:
                    stack.stop()
                print(f"round {r + 1} {way}: {row[way]}", flush=True)
            results["rounds"].append(row)
    finally:
        stop_process(proc)
    results["load_end"] = os.getloadavg()[0]

    def median(way: str, part: str, field: str) -> float:
        return statistics.median(r[way][part][field] for r in results["rounds"])

    summary = {way: {"ttft_p50_ms_1": median(way, "sequential", "ttft_p50_ms"),
                     "tokens_per_s": median(way, "concurrent", "tokens_per_s"),
                     "ttft_p50_ms_n": median(way, "concurrent", "ttft_p50_ms")}
               for way in ("direct", "genloom", "transport") + (("ab",) if ab else ())}
    d, g = summary["direct"], summary["genloom"]
    summary["throughput_ratio"] = g["tokens_per_s"] / d["tokens_per_s"]
    summary["ttft_added_ms_1"] = g["ttft_p50_ms_1"] - d["ttft_p50_ms_1"]
    t = summary["transport"]
    summary["transport_throughput_ratio"] = t["tokens_per_s"] / d["tokens_per_s"]
    summary["transport_ttft_added_ms_1"] = t["ttft_p50_ms_1"] - d["ttft_p50_ms_1"]
    results["summary"] = summary
    print(f"\n{'':24} {'TTFT p50 ms (1)':>16} {f'tok/s ({args.concurrency})':>14} {f'TTFT p50 ms ({args.concurrency})':>18}")
    for way, label in (("direct", "engine server direct"), ("genloom", "through genloom"),
                       ("transport", "genloom, stages off")) + ((("ab", "genloom, --ab"),) if ab else ()):
        s = summary[way]
        print(f"{label:24} {s['ttft_p50_ms_1']:16.1f} {s['tokens_per_s']:14.1f} {s['ttft_p50_ms_n']:18.1f}")
    print(f"throughput through genloom: {summary['throughput_ratio']:.3f}x direct (target > 0.95);"
          f" TTFT added at one stream: {summary['ttft_added_ms_1']:.1f} ms (target < 15)")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
