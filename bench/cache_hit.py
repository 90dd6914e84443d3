"""A cache hit end to end: a non-streamed chat completion answered from the semantic cache, against
the same completion answered at once by a worker, both through the whole platform in one run.

One run starts a bundled broker, a redis-server, `python -m streams` (routing, fan-out, cache fill)
and two gateways in this process: one routes jobs straight to `genloom.jobs.text` (the default),
the other through `genloom.requests`, where a stand-in preparation chain (bench/prep_chain.py: the
real embedding and cache stages) answers hits.

- baseline: route `direct`, and a worker that answers every job the moment it reads it (started,
  one token, completed): the platform's own floor for a chat, no model time;
- genloom cache hit: route `streams`, the prompt embedded and found in the cache, its answer's
  events published by the chain; nothing else runs.

Both are timed from the HTTP call to the JSON answer (httpx), alternating, `--requests` each.

    python bench/cache_hit.py [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.prep_chain import run_chain  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.auth import ApiKeys  # noqa: E402
from gateway.inprocess import InProcessServer  # noqa: E402
from infra.blob import LocalBlobStore  # noqa: E402
from infra.kafka import clients  # noqa: E402
from infra.kafka.broker import LocalBroker  # noqa: E402
from infra.kafka.codec import decode_request  # noqa: E402
from infra.kafka.emitter import EventEmitter  # noqa: E402
from infra.kafka.topics import EVENTS, catalogue, jobs_topic  # noqa: E402
from infra.models.catalog import TextModelCatalog  # noqa: E402
from infra.procs import stop_process  # noqa: E402
from infra.redis import keys  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from infra.settings.gateway import GatewaySettings  # noqa: E402
from schemas.enums import EventSource  # noqa: E402
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cache_hit.json"
KEYS = {"base": "bench-key-base", "cache": "bench-key-cache"}
PROMPT = "What is the capital city of France?"
ANSWER = "The capital of France is Paris."
SOURCE = "bench-cache-src"
MODEL_INFO = ModelInfo(id="instant", device="cpu", dtype="float32")


async def instant_worker(bootstrap: str, emitter: EventEmitter) -> None:
    """Answers every job of tenant `base` as soon as it is read."""
    consumer = clients.consumer(bootstrap, jobs_topic("text"), group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    try:
        while True:
            polled = await consumer.getmany(timeout_ms=10)
            for message in (m for batch in polled.values() for m in batch):
                request = decode_request(message.value)
                if request.tenant == "base":
                    await answer(emitter, request.job_id)
    finally:
        await consumer.stop()


async def answer(emitter: EventEmitter, job_id: str) -> None:
    await emitter.emit(Started, job_id, worker="instant", model=MODEL_INFO)
    await emitter.emit(TokenDelta, job_id, text=ANSWER, tokens=7)
    await emitter.emit(Completed, job_id, text=ANSWER, usage=Usage(prompt_tokens=9, completion_tokens=7,
                                                                   total_tokens=16))


async def wait_for_key(redis, key: str, present: bool, what: str) -> None:
    deadline = time.monotonic() + 60
    while bool(await redis.exists(key)) != present:
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def complete(http: httpx.AsyncClient, url: str, tenant: str, job_id: str | None = None) -> float:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}", **({"Idempotency-Key": job_id} if job_id else {})}
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
            "max_tokens": 32}
    started = time.perf_counter()
    reply = await http.post(f"{url}/v1/chat/completions", json=body, headers=headers)
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    assert reply.json()["choices"][0]["message"]["content"] == ANSWER, reply.text
    return elapsed


def summary(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2)}


async def main(args: argparse.Namespace) -> dict:
    broker, redis_server = LocalBroker().start(), LocalRedis().start()
    streams = None
    tasks: list[asyncio.Task] = []
    try:
        await clients.ensure_topics(broker.bootstrap, catalogue())
        env = dict(os.environ, GENLOOM_KAFKA_BOOTSTRAP=broker.bootstrap, GENLOOM_REDIS_URL=redis_server.url,
                   GENLOOM_STREAMS_SESSION_TIMEOUT_S="2", GENLOOM_STREAMS_HEARTBEAT_S="0.5",
                   GENLOOM_STREAMS_REBALANCE_TIMEOUT_S="5", GENLOOM_STREAMS_APP_ID="genloom-bench-cache")
        streams = subprocess.Popen([sys.executable, "-m", "streams"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        redis = connect(redis_server.url)
        producer = clients.producer(broker.bootstrap)
        await clients.start_client(producer, broker.bootstrap)
        catalog = TextModelCatalog.from_settings()
        await catalog.load()
        servers = {}
        for route in ("direct", "streams"):
            app = create_app(GatewaySettings(max_inflight=1000, sse_keepalive_s=5, route=route), redis=redis,
                             producer=producer, api_keys=ApiKeys((k, t) for t, k in KEYS.items()),
                             blobs=LocalBlobStore(Path(args.blob_dir)), text_models=catalog)
            servers[route] = await InProcessServer(app).start()
        ready = asyncio.Event()
        emitter = EventEmitter(producer, EVENTS, EventSource.WORKER)
        tasks = [asyncio.create_task(instant_worker(broker.bootstrap, emitter)),
                 asyncio.create_task(run_chain(broker.bootstrap, redis_server.url, producer, {"cache"},
                                               threshold=0.94, ready=ready))]
        await asyncio.wait_for(ready.wait(), 120)
        async with httpx.AsyncClient(timeout=120) as http:
            await complete(http, servers["direct"].url, "base")  # the fan-out and the worker are up
            # the source: a miss (its marker written by the chain), then answered as a worker would; here
            # the routing agent forwards requests beside the chain, so the answer waits for the marker
            source = asyncio.create_task(complete(http, servers["streams"].url, "cache", SOURCE))
            await wait_for_key(redis, keys.cache_pending(SOURCE), True, "the chain never recorded the miss")
            await answer(emitter, SOURCE)
            await source
            await wait_for_key(redis, keys.cache_pending(SOURCE), False, "the fill never stored the answer")
            await complete(http, servers["streams"].url, "cache")  # the chain's first hit (warm)
            base, hits = [], []
            for _ in range(args.requests):  # alternating, so both see the same machine load
                base.append(await complete(http, servers["direct"].url, "base"))
                hits.append(await complete(http, servers["streams"].url, "cache"))
        for server in servers.values():
            await server.stop()
        await producer.stop()
        await redis.aclose()
        return {"requests": args.requests, "baseline_direct_instant_worker": summary(base),
                "genloom_cache_hit": summary(hits), "machine": {"cpus": os.cpu_count(), "python":
                                                                platform.python_version()},
                "load_average_1m": os.getloadavg()[0]}
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if streams is not None:
            stop_process(streams, timeout=10)
        broker.stop()
        redis_server.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--blob-dir", default=str(Path.home() / ".genloom" / "bench-blobs"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = asyncio.run(main(args))
    b, h = report["baseline_direct_instant_worker"], report["genloom_cache_hit"]
    print(f"non-streamed chat, {args.requests} each (load average {report['load_average_1m']:.1f}):")
    print(f"  baseline: direct route, instant worker  p50 {b['p50_ms']} ms  p99 {b['p99_ms']} ms")
    print(f"  genloom: cache hit (streams route)      p50 {h['p50_ms']} ms  p99 {h['p99_ms']} ms")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
