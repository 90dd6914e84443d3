"""Embedding throughput and the semantic cache's lookup latency.

Embedding: prompts/s of the embedding stage's model call (all-MiniLM-L6-v2, this machine's CPU, the
torch threads given) at batch sizes 1, 8 and 32 over the paraphrase set's prompts; batch 1 is the
baseline a stage that embedded one message at a time would get. The same in float32 for each runtime
(`--runtimes`, default torch and onnxruntime): which one GENLOOM_EMBEDDING_RUNTIME=auto should pick.

Cache: the latency of `CacheStage.run` for one job (its embedding given), measured for a hit in the
in-process tier, a hit in the Redis tier (a local redis-server; the in-process tier kept empty), a
hit in a Redis scope holding the most entries a scope may hold, and a miss (lookup and the miss
marker). p50 and p99 over `--lookups` runs each.

    python bench/embedding_cache.py [--threads 1] [--lookups 500] [--runtimes torch,onnxruntime]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from infra.models.embedder import load_embedder
from infra.redis import keys
from infra.redis.client import connect
from infra.redis.semcache import Bounds, SemanticCacheStore
from infra.redis.server import LocalRedis
from schemas import parse_request
from schemas.enums import FinishReason
from schemas.events import ModelInfo
from streams.cache.logic import Answer, LocalTier, TenantPolicy, scope_of
from streams.cache.stage import CacheStage
from streams.cache.tiers import Miss, SemanticCache
from streams.stages import Item

DATA = Path(__file__).parent / "data" / "cache_paraphrases.json"
RESULTS = Path(__file__).parent / "results" / "embedding_cache.json"
MODEL = ModelInfo(id="m", device="cpu", dtype="float32")
ANSWER_TEXT = "Paris is the capital of France. " * 8


def prompts() -> list[str]:
    data = json.loads(DATA.read_text())
    return [p for pair in data["same"] + data["near_miss"] for p in pair]


def throughput(texts: list[str], batch: int, rounds: int, **how) -> float:
    embedder = load_embedder(**how)
    embedder.encode(texts[:batch], batch)  # warm
    done, started = 0, time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(texts) - batch + 1, batch):
            embedder.encode(texts[i:i + batch], batch)
            done += batch
    return done / (time.perf_counter() - started)


def pcts(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000}


def request(i: int, prompt: str = "What is the capital of France?"):
    return parse_request({"job_id": f"bench-{i}", "tenant": "bench", "modality": "text",
                          "params": {"messages": [{"role": "user", "content": prompt}], "temperature": 0}})


async def stage_latency(cache: SemanticCache, vector: np.ndarray, n: int, prompt: str, expect_hit: bool) -> dict:
    stage = CacheStage(cache, TenantPolicy(), "e")
    samples = []
    for i in range(n):
        item = Item(request(i, prompt), b"k", embedding=vector)
        started = time.perf_counter()
        await stage.run([item])
        samples.append(time.perf_counter() - started)
        assert (not item.pending) == expect_hit, "the benchmark's lookup did not do what it measures"
    return pcts(samples)


async def cache_latencies(vector: np.ndarray, n: int) -> dict:
    results = {}
    question = request(0)
    scope = scope_of(question, "e")
    answer = Answer("bench-src", ANSWER_TEXT, FinishReason.STOP, MODEL, time.time())
    local = SemanticCache(LocalTier(max_entries=2048, max_bytes=1 << 24, ttl_s=3600), None, threshold=0.94,
                          ttl_s=3600)
    local.local.put(scope, vector, answer, time.time())
    results["hit_in_process"] = await stage_latency(local, vector, n, "What is the capital of France?", True)
    with LocalRedis() as server:
        redis = connect(server.url, socket_timeout_s=1.0, connect_timeout_s=1.0)
        try:
            store = SemanticCacheStore(redis, Bounds())

            def shared() -> SemanticCache:  # an in-process tier too small to keep anything: every hit reads Redis
                return SemanticCache(LocalTier(max_entries=1, max_bytes=1024, ttl_s=3600), store, threshold=0.94,
                                     ttl_s=3600)

            await shared().store_answers([(Miss(scope, vector), answer)])
            results["hit_redis_1_entry"] = await stage_latency(shared(), vector, n, "What is the capital of France?",
                                                               True)
            rng = np.random.default_rng(0)
            others = []
            for i in range(keys.CACHE_SCOPE_MAX_ENTRIES - 1):
                v = rng.normal(size=vector.shape[0]).astype(np.float32)
                others.append((Miss(scope, v / np.linalg.norm(v)),
                               Answer(f"bench-other-{i}", ANSWER_TEXT, FinishReason.STOP, MODEL, time.time())))
            await shared().store_answers(others)
            results[f"hit_redis_{keys.CACHE_SCOPE_MAX_ENTRIES}_entries"] = await stage_latency(
                shared(), vector, n, "What is the capital of France?", True)
            far = rng.normal(size=vector.shape[0]).astype(np.float32)
            results["miss_redis"] = await stage_latency(shared(), far / np.linalg.norm(far), n,
                                                        "What is the capital of France?", False)
        finally:
            await redis.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="Passes over the prompts per batch size.")
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--runtimes", default="torch,onnxruntime", help="Runtimes compared in float32.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    texts = prompts()
    rates = {batch: throughput(texts, batch, args.rounds) for batch in (1, 8, 32)}
    print(f"embedding, {len(texts)} prompts x {args.rounds}, {args.threads} thread(s):")
    for batch, rate in rates.items():
        print(f"  batch {batch:2d}: {rate:7.1f} prompts/s ({rate / rates[1]:.2f}x batch 1)")
    runtimes = {r: {b: throughput(texts, b, args.rounds, runtime=r, dtype="float32") for b in (1, 8)}
                for r in args.runtimes.split(",") if r}
    for runtime, by_batch in runtimes.items():
        print(f"  {runtime:12s} float32: " + ", ".join(f"batch {b}: {1000 * b / r:.2f} ms per call"
                                                     for b, r in by_batch.items()))
    vector = load_embedder().encode(["What is the capital of France?"])[0]
    latencies = asyncio.run(cache_latencies(vector, args.lookups))
    print(f"cache stage, one job, {args.lookups} runs each:")
    for name, values in latencies.items():
        print(f"  {name:24s} p50 {values['p50_ms']:.3f} ms  p99 {values['p99_ms']:.3f} ms")
    args.out.write_text(json.dumps({
        "model": "sentence-transformers/all-MiniLM-L6-v2", "threads": args.threads, "prompts": len(texts),
        "embedding_prompts_per_s": {str(b): r for b, r in rates.items()}, "cache_stage": latencies,
        "float32_prompts_per_s_by_runtime": {rt: {str(b): r for b, r in v.items()} for rt, v in runtimes.items()},
        "scope_max_entries": keys.CACHE_SCOPE_MAX_ENTRIES, "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
