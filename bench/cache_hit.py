"""A cache hit end to end: a non-streamed chat completion answered from the semantic cache, against
the same completion answered at once by a worker, both through the whole platform in one run.

One run starts a bundled broker, a redis-server, the real `python -m streams` process (its preparation
chain on `genloom.requests`, privacy -> embedding -> cache, the routing to the workers, the cache fill
and the fan-out) and two gateways in this process: one routes jobs straight to `genloom.jobs.text`,
the other through `genloom.requests`, where the streams process's chain answers hits.

- baseline: route `direct`, and a worker that answers every job of its tenant the moment it reads it
  (started, one token, completed): the platform's own floor for a chat, no model time;
- genloom cache hit: route `streams`, the prompt redacted, embedded and found in the cache by the
  streams process, its answer's events written to the job's replay log and published by the chain;
  nothing else runs (the worker never answers this tenant, so a miss would hang, and every hit is
  checked to have used no tokens). Every hit repeats one prompt word for word: after the first, the
  privacy stage knows it clean and the embedding stage has its vector (both remembered by digest),
  so this is an exact repeat's hit; a paraphrase's hit also pays its analysis and its embedding.

Both are timed from the HTTP call to the JSON answer (httpx), alternating, `--requests` each.

    python bench/cache_hit.py [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

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
from infra.settings.streams import PrivacySettings  # noqa: E402
from schemas.enums import EventSource  # noqa: E402
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage  # noqa: E402
from schemas.requests import scoped_job_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: moderation off (this process and the streams process it starts), as in the recorded runs: with it on a hit's
#: answer goes through the gate, which this bench does not run ("Moderation cost on a token stream" measures it)
os.environ["GENLOOM_MODERATION_CLASSIFIER"] = "none"
RESULTS = ROOT / "bench" / "results" / "cache_hit.json"
KEYS = {"base": "bench-key-base", "cache": "bench-key-cache"}
SIGNING_KEY = "bench-cache-signing-key"
PRIVACY_KEY = "bench-cache-privacy-key"
#: consumer timings that make group joins take about a second on the bundled broker
FAST_STREAMS = {"GENLOOM_STREAMS_SESSION_TIMEOUT_S": "2", "GENLOOM_STREAMS_HEARTBEAT_S": "0.5",
                "GENLOOM_STREAMS_REBALANCE_TIMEOUT_S": "5", "GENLOOM_KAFKA_SESSION_TIMEOUT_MS": "2000",
                "GENLOOM_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
STAGES = "privacy,embedding,cache"  # the streams process's chain (its default)
PROMPT = "What is the capital city of France?"
ANSWER = "The capital of France is Paris."
ANSWER_TOKENS = 7
SOURCE = "bench-cache-src"  # the tenant's id of the job whose answer the cache serves
MODEL_INFO = ModelInfo(id="instant", device="cpu", dtype="float32")


async def instant_worker(bootstrap: str, emitter: EventEmitter) -> None:
    """Answers every job of tenant `base` as soon as it is read."""
    consumer = clients.consumer(bootstrap, jobs_topic("text"), group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    try:
        while True:  # hot loop: one pass over what was polled
            polled = await consumer.getmany(timeout_ms=10)
            for message in (m for batch in polled.values() for m in batch):
                request = decode_request(message.value)
                if request.tenant == "base":
                    await answer(emitter, request.job_id)
    finally:
        await consumer.stop()


async def answer(emitter: EventEmitter, job_id: str) -> None:
    await emitter.emit(Started, job_id, worker="instant", model=MODEL_INFO)
    await emitter.emit(TokenDelta, job_id, text=ANSWER, tokens=ANSWER_TOKENS)
    await emitter.emit(Completed, job_id, text=ANSWER, usage=Usage(
        prompt_tokens=9, completion_tokens=ANSWER_TOKENS, total_tokens=9 + ANSWER_TOKENS))


def start_streams(bootstrap: str, redis_url: str, log_path: Path) -> subprocess.Popen:
    """`python -m streams` with its default chain (privacy, embedding, cache); the cache serves tenant
    `cache` only, at its default threshold. It runs in the log's folder, where faust writes its data."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", **os.environ, **FAST_STREAMS,
           "GENLOOM_KAFKA_BOOTSTRAP": bootstrap, "GENLOOM_REDIS_URL": redis_url,
           "GENLOOM_REQUEST_SIGNING_KEY": SIGNING_KEY, "GENLOOM_PRIVACY_KEY": PRIVACY_KEY,
           "GENLOOM_PREPARE_STAGES": STAGES, "GENLOOM_SEMANTIC_CACHE_TENANTS_ONLY": "cache",
           "GENLOOM_STREAMS_APP_ID": "genloom-bench-cache", "PYTHONPATH": path}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "streams"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=log_path.parent, start_new_session=True)


async def wait_until(check, what: str, streams: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if streams.poll() is not None:
            raise RuntimeError(f"the streams process exited ({streams.returncode}) before {what}: see {log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s: see {log_path}")
        await asyncio.sleep(0.05)  # poll interval


async def complete(http: httpx.AsyncClient, url: str, tenant: str, job_id: str | None = None, *,
                   hit: bool = False) -> float:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}", **({"Idempotency-Key": job_id} if job_id else {})}
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
            "max_tokens": 32}
    started = time.perf_counter()
    reply = await http.post(f"{url}/v1/chat/completions", json=body, headers=headers)
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    data = reply.json()
    assert data["choices"][0]["message"]["content"] == ANSWER, reply.text
    # a cached answer costs no tokens; the worker's costs its own
    assert data["usage"]["completion_tokens"] == (0 if hit else ANSWER_TOKENS), reply.text
    return elapsed


def summary(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2)}


async def main(args: argparse.Namespace) -> dict:
    broker, redis_server = LocalBroker().start(), LocalRedis().start()
    log_path = Path(tempfile.mkdtemp(prefix="genloom-bench-cache-")) / "streams.log"
    streams = worker = None
    try:
        await clients.ensure_topics(broker.bootstrap, catalogue())
        streams = start_streams(broker.bootstrap, redis_server.url, log_path)
        redis = connect(redis_server.url)
        producer = clients.producer(broker.bootstrap)
        await clients.start_client(producer, broker.bootstrap)
        catalog = TextModelCatalog.from_settings()
        await catalog.load()
        servers = {}
        for route in ("direct", "streams"):
            app = create_app(GatewaySettings(max_inflight=1000, sse_keepalive_s=5, route=route), redis=redis,
                             producer=producer, api_keys=ApiKeys((k, t) for t, k in KEYS.items()),
                             blobs=LocalBlobStore(Path(args.blob_dir)), text_models=catalog,
                             signing_key=SIGNING_KEY.encode(), privacy=PrivacySettings(key=PRIVACY_KEY))
            servers[route] = await InProcessServer(app).start()
        emitter = EventEmitter(producer, EVENTS, EventSource.WORKER)
        worker = asyncio.create_task(instant_worker(broker.bootstrap, emitter))
        source_id = scoped_job_id("cache", SOURCE)  # how the workers, Redis and the cache know it

        async def chain_built() -> bool:
            return b"preparation chain:" in log_path.read_bytes()

        def marker(present: bool):
            async def check() -> bool:
                return bool(await redis.exists(keys.cache_pending(source_id))) == present
            return check

        await wait_until(chain_built, "its preparation chain was built", streams, log_path, 300)
        async with httpx.AsyncClient(timeout=120) as http:
            await complete(http, servers["direct"].url, "base")  # the fan-out and the worker are up
            # the source: a miss (the cache stage leaves its marker, and the chain routes the job to the
            # workers), answered here as a worker would; the fill agent then stores the answer
            source = asyncio.create_task(complete(http, servers["streams"].url, "cache", SOURCE))
            await wait_until(marker(True), "the cache stage recorded the miss", streams, log_path, 120)
            await answer(emitter, source_id)
            await source
            await wait_until(marker(False), "the fill agent stored the answer", streams, log_path, 60)
            await complete(http, servers["streams"].url, "cache", hit=True)  # the chain's first hit (warm)
            base, hits = [], []
            for _ in range(args.requests):  # alternating, so both see the same machine load
                base.append(await complete(http, servers["direct"].url, "base"))
                hits.append(await complete(http, servers["streams"].url, "cache", hit=True))
        if streams.poll() is not None:
            raise RuntimeError(f"the streams process exited ({streams.returncode}) during the run: see {log_path}")
        for server in servers.values():
            await server.stop()
        await producer.stop()
        await redis.aclose()
        return {"requests": args.requests, "chain": STAGES.split(","), "baseline_direct_instant_worker": summary(base),
                "genloom_cache_hit": summary(hits), "machine": {"cpus": os.cpu_count(), "python":
                                                                platform.python_version()},
                "load_average_1m": os.getloadavg()[0]}
    finally:
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
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
    print(f"  baseline: direct route, instant worker        p50 {b['p50_ms']} ms  p99 {b['p99_ms']} ms")
    print(f"  genloom: cache hit (streams process's chain)  p50 {h['p50_ms']} ms  p99 {h['p99_ms']} ms")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
