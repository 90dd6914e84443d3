"""What the preparation stages cost: throughput of the chain, the latency each stage adds, and a
short chat's time to first token with the stages on against the direct route, in one run.

1. The chain driven directly (no Kafka): `run_chain([privacy])` over batches of 1, 8 and 32 chat
   requests whose prompts are sentences of the labelled set (bench/data/privacy_sentences.txt),
   with the placeholder mappings written to a real redis-server: jobs/s, and the stage's
   milliseconds per batch (p50, p99).
2. The live processor (`python -m streams`, GENLOOM_PREPARE_BATCH_MAX 1, 8, 32): a burst of signed
   image requests on `genloom.requests`, timed until the last one is on `genloom.jobs.image` (no
   image worker runs, so nothing else competes); the stage's milliseconds from the `prepared` events.
3. Time to first token of a short streamed chat (SmolLM2, greedy, 4 tokens) through the whole stack,
   alternating a tenant whose jobs go through `genloom.requests` and the stages with one that has
   every stage off (GENLOOM_PREPARE_OFF_TENANTS: the gateway's direct route), same gateway, same
   worker, and a third route: the staged tenant's new questions in a cache scope that holds answers
   (`ROUTES`). Also split by the job's own events: submit to the worker's `started`. Target: the
   stages add under 15 ms p50.
4. Where that time goes, hop by hop, for both routes (p50/p90): submit (the gateway accepts, then
   produces) -> produced to genloom.requests (the Kafka record's timestamp) -> polled by the processor (the
   `prepared` event's polled_ts) -> each stage (its stage_ms) -> produced to genloom.jobs.text ->
   the worker's `started`. The direct route has no requests/processor hops.

    .venv/bin/python bench/prepare_stages.py               # writes bench/results/prepare_stages.json
    .venv/bin/python bench/prepare_stages.py --only-ttft   # only 3 and 4: bench/results/prepare_stages_ttft.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402

from bench.common import cpu_model  # noqa: E402
from bench.privacy_quality import load  # noqa: E402
from infra.kafka import clients  # noqa: E402
from schemas.requests import qualified, scoped_job_id  # noqa: E402
from infra.kafka.codec import encode  # noqa: E402
from infra.kafka.signing import signature_headers  # noqa: E402
from infra.kafka.topics import EVENTS, REQUESTS, jobs_topic  # noqa: E402
from infra.procs import free_port, stop_process  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.jobstore import JobStore  # noqa: E402
from infra.redis.redactions import RedactionVault  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from infra.settings.streams import PrivacySettings  # noqa: E402
from infra.stack import Stack  # noqa: E402
from schemas import parse_request  # noqa: E402
from schemas.events import Completed, Prepared, Started  # noqa: E402
from streams.prepare.chain import run_chain  # noqa: E402
from streams.privacy.engine import PiiAnalyzer  # noqa: E402
from streams.privacy.stage import PrivacyStage  # noqa: E402
from streams.stages import Item  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "prepare_stages.json"
BATCHES = (1, 8, 32)
SIGNING_KEY = "bench-signing-key"
PRIVACY_KEY = "bench-privacy-key"
KEYS = {"stages": "bench-key-stages", "direct": "bench-key-direct"}
FAST = {"GENLOOM_KAFKA_SESSION_TIMEOUT_MS": "2000", "GENLOOM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "GENLOOM_STREAMS_SESSION_TIMEOUT_S": "2", "GENLOOM_STREAMS_HEARTBEAT_S": "0.5",
        "GENLOOM_STREAMS_REBALANCE_TIMEOUT_S": "5", "GENLOOM_WORKER_TORCH_THREADS": "1"}
SENTENCES = [text for text, _ in load()]


def q(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def chat(i: int) -> dict:
    return {"job_id": f"bench-{time.time_ns():x}-{i}", "tenant": "bench", "modality": "text",
            "params": {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                    {"role": "user", "content": SENTENCES[i % len(SENTENCES)]}]}}


async def chain_direct(rounds_jobs: int) -> list[dict]:
    """The chain in this process: no Kafka, the mappings into a real Redis."""
    out = []
    with LocalRedis() as server:
        redis = connect(server.url)
        stage = PrivacyStage(PiiAnalyzer(), RedactionVault(redis, PRIVACY_KEY.encode()),
                             PrivacySettings(key=PRIVACY_KEY))
        await run_chain([stage], [Item(parse_request(chat(0)), b"k")])  # warm-up
        for size in BATCHES:
            per_batch: list[float] = []
            n, i = 0, 0
            began = time.perf_counter()
            while n < rounds_jobs:
                items = [Item(parse_request(chat(i + j)), b"k") for j in range(size)]
                i += size
                spent = await run_chain([stage], items)
                per_batch.append(spent["privacy"])
                n += size
            wall = time.perf_counter() - began
            out.append({"batch": size, "jobs": n, "jobs_per_s": round(n / wall, 1),
                        "privacy_ms_per_batch_p50": round(q(per_batch, 0.5), 2),
                        "privacy_ms_per_batch_p99": round(q(per_batch, 0.99), 2),
                        "privacy_ms_per_job_p50": round(q(per_batch, 0.5) / size, 2)})
            print(f"chain direct, batch {size:2}: {out[-1]['jobs_per_s']} jobs/s, privacy "
                  f"{out[-1]['privacy_ms_per_batch_p50']} ms p50 / {out[-1]['privacy_ms_per_batch_p99']} ms p99 per batch")
        await redis.aclose()
    return out


async def burst(bootstrap: str, n: int) -> dict:
    """n signed image requests at once onto genloom.requests; seconds until all are on the job topic."""
    producer = clients.producer(bootstrap)
    await clients.start_client(producer, bootstrap)
    consumer = clients.consumer(bootstrap, jobs_topic("image"), group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    tag = f"burst-{time.time_ns():x}"
    wanted = set()
    ids: set[str] = set()
    try:
        began = time.perf_counter()
        for i in range(n):
            # published as the gateway publishes: qualified by tenant (job_id is the internal id)
            request = qualified(parse_request({"job_id": f"{tag}-{i}", "tenant": "bench", "modality": "image",
                                               "params": {"prompt": SENTENCES[i % len(SENTENCES)][:4000]}}))
            wanted.add(request.job_id)
            ids.add(request.job_id)
            await producer.send(REQUESTS, encode(request), key=request.key.encode(),
                                headers=signature_headers(SIGNING_KEY, request))
        await producer.flush()
        while wanted:
            for messages in (await consumer.getmany(timeout_ms=50)).values():
                for m in messages:
                    wanted.discard(json.loads(m.value).get("job_id"))
            if time.perf_counter() - began > 300:
                raise TimeoutError(f"{len(wanted)} requests never reached the job topic")
        wall = time.perf_counter() - began
    finally:
        await consumer.stop()
        await producer.stop()
    stage_ms = await prepared_ms(bootstrap, ids)
    return {"jobs": n, "jobs_per_s": round(n / wall, 1), "privacy_ms_per_batch_p50": round(q(stage_ms, 0.5), 2),
            "privacy_ms_per_batch_p99": round(q(stage_ms, 0.99), 2)}


async def prepared_ms(bootstrap: str, ids: set[str]) -> list[float]:
    n = len(ids)
    consumer = clients.consumer(bootstrap, EVENTS, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    found: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60
        while len(found) < n and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                for m in messages:
                    try:
                        e = json.loads(m.value)
                    except ValueError:
                        continue
                    if isinstance(e, dict) and e.get("type") == "prepared" and e.get("job_id") in ids:
                        found[e["job_id"]] = e["stage_ms"]["privacy"]
    finally:
        await consumer.stop()
    return list(found.values())


#: new questions to the cache in one scope (no key terms: no numbers, names, negations or pivot words), far
#: apart in meaning: once that scope holds an answer (the warm-up's), each is embedded before its lookup
QUESTIONS = ["What do bees make?", "Why is the sky blue?", "How do plants grow?", "What is a volcano?",
             "How does rain form?", "What do cats eat?", "Why do leaves fall?", "What is gravity?",
             "How do birds fly?", "What is a rainbow?", "Why is the sea salty?", "What makes thunder?",
             "How do fish breathe?", "What is a comet?", "How is glass made?", "Why do we sleep?",
             "What is an atom?", "How do magnets work?", "What is a desert?", "Why do stars twinkle?",
             "How is paper made?", "What is a glacier?", "How do bats find food?", "What is photosynthesis?"]
SHORT = ["Name a colour.", "Say hello.", "Name a planet.", "What do bees make?"]
#: route -> (tenant, its i-th prompt). The staged and the direct routes ask the same numbered prompts: the
#: number is a key term, so each staged chat is in a scope of its own that holds nothing (the cache has
#: nothing to compare, and the vector is computed after the job is sent). The third route asks staged
#: chats in a scope that holds answers (the vector is computed before the lookup, as for common questions).
ROUTES = {"stages": ("stages", lambda i: f"{SHORT[i % len(SHORT)]} ({i})"),
          "direct": ("direct", lambda i: f"{SHORT[i % len(SHORT)]} ({i})"),
          "stages_scope_in_use": ("stages", lambda i: QUESTIONS[i % len(QUESTIONS)])}


async def chat_ttft(url: str, tenant: str, http: httpx.AsyncClient, prompt: str) -> tuple[float, str, float]:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4,
            "temperature": 0, "stream": True}
    wall, began = time.time(), time.perf_counter()
    first, job = None, None
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {KEYS[tenant]}"}) as r:
        async for line in r.aiter_lines():  # read to the end: the next request starts on an idle stack
            if first is None and line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - began
                    job = chunk["id"].removeprefix("chatcmpl-")
    if first is not None:
        return first, job, wall
    raise RuntimeError("no token came back")


async def ttft(url: str, redis_url: str, bootstrap: str, n: int) -> dict:
    store = JobStore(connect(redis_url))
    runs = {r: {"ttft": [], "to_started": [], "started_to_token": [], "prompt_tokens": [], "jobs": []} for r in ROUTES}
    async with httpx.AsyncClient(timeout=300) as http:
        for tenant in KEYS:  # warm-up, and wait until the worker answers ("hi" is then the answer in the scope of
            for _ in range(120):  # the QUESTIONS)
                try:
                    await chat_ttft(url, tenant, http, "hi")
                    break
                except (httpx.HTTPError, RuntimeError):
                    await asyncio.sleep(1)
        await asyncio.sleep(1)  # the warm-up's answer is in the cache
        for i in range(len(ROUTES) * n):
            route = list(ROUTES)[i % len(ROUTES)]
            tenant, prompt_of = ROUTES[route]
            first, job, wall = await chat_ttft(url, tenant, http, prompt_of(i // len(ROUTES)))
            events = [entry.event for entry in await store.entries(scoped_job_id(f"bench-{tenant}", job))]
            started = next((e.ts for e in events if isinstance(e, Started)), None)
            assert started is not None, f"no worker started {route}'s job (a cache hit?): pick other prompts"
            runs[route]["jobs"].append((scoped_job_id(f"bench-{tenant}", job), wall, events))
            if tenant == "stages":
                assert any(e.type == "prepared" for e in events), \
                    f"a staged job without a prepared event: {route} {prompt_of(i // len(ROUTES))!r} {[e.type for e in events]}"
            runs[route]["ttft"].append(first * 1000)
            runs[route]["to_started"].append((started - wall) * 1000)
            token = next((e.ts for e in events if e.type == "token"), None)
            if token is not None:
                runs[route]["started_to_token"].append((token - started) * 1000)
            done = next((e for e in events if isinstance(e, Completed)), None)
            if done is not None and done.usage.prompt_tokens is not None:
                runs[route]["prompt_tokens"].append(done.usage.prompt_tokens)
    out = {r: {"requests": n, "ttft_p50_ms": round(statistics.median(v["ttft"]), 1),
               "ttft_p90_ms": round(q(v["ttft"], 0.9), 1),
               "submit_to_started_p50_ms": round(statistics.median(v["to_started"]), 1),
               "started_to_first_token_p50_ms": round(statistics.median(v["started_to_token"] or [0.0]), 1),
               "prompt_tokens_p50": statistics.median(v["prompt_tokens"] or [0])} for r, v in runs.items()}
    for route, suffix in (("stages", ""), ("stages_scope_in_use", "_scope_in_use")):
        out[f"added_ttft_p50_ms{suffix}"] = round(out[route]["ttft_p50_ms"] - out["direct"]["ttft_p50_ms"], 1)
        out[f"added_submit_to_started_p50_ms{suffix}"] = round(
            out[route]["submit_to_started_p50_ms"] - out["direct"]["submit_to_started_p50_ms"], 1)
    out["hops"] = await hops(bootstrap, {r: v["jobs"] for r, v in runs.items()})
    return out


async def produced_at(bootstrap: str, topic: str, ids: set[str]) -> dict[str, float]:
    """Unix time each job's record was produced to `topic` (the record's create timestamp, in ms)."""
    consumer = clients.consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    found: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 30
        while len(found) < len(ids) and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                for m in messages:
                    try:
                        job = json.loads(m.value).get("job_id")
                    except (ValueError, AttributeError):
                        continue
                    if job in ids and job not in found:
                        found[job] = m.timestamp / 1000
    finally:
        await consumer.stop()
    return found


async def hops(bootstrap: str, jobs: dict[str, list]) -> dict:
    """Per route, the milliseconds of each hop from submit to the worker's `started` (p50, p90)."""
    ids = {job for rows in jobs.values() for job, _, _ in rows}
    on_requests = await produced_at(bootstrap, REQUESTS, {j for r, rows in jobs.items() if r != "direct"
                                                          for j, _, _ in rows})
    on_jobs = await produced_at(bootstrap, jobs_topic("text"), ids)
    table: dict[str, dict[str, list[float]]] = {}
    for route, rows in jobs.items():
        spans: dict[str, list[float]] = {}
        for job, wall, events in rows:
            prepared = next((e for e in events if isinstance(e, Prepared)), None)
            started = next(e.ts for e in events if isinstance(e, Started))
            if job not in on_jobs:
                continue
            if route != "direct" and prepared is not None and prepared.polled_ts and job in on_requests:
                stages = sum(prepared.stage_ms.values())
                marks = [("submit -> on requests", (on_requests[job] - wall) * 1000),
                         ("on requests -> polled", (prepared.polled_ts - on_requests[job]) * 1000),
                         *((f"  stage {name}", ms) for name, ms in prepared.stage_ms.items()),
                         ("polled -> on jobs, less stages", (on_jobs[job] - prepared.polled_ts) * 1000 - stages)]
            else:
                marks = [("submit -> on jobs", (on_jobs[job] - wall) * 1000)]
            marks += [("on jobs -> started", (started - on_jobs[job]) * 1000),
                      ("submit -> started", (started - wall) * 1000)]
            for name, ms in marks:
                spans.setdefault(name, []).append(ms)
        table[route] = {name: {"p50": round(q(v, 0.5), 1), "p90": round(q(v, 0.9), 1), "n": len(v)}
                        for name, v in spans.items()}
    return table


async def flush(redis_url: str) -> None:
    """Empty the bench stack's own Redis (job records and cached answers of the earlier rounds)."""
    redis = connect(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def print_hops(table: dict) -> None:
    print("where the time goes (ms, p50 / p90; record timestamps have 1 ms resolution):")
    for route, spans in table.items():
        print(f"  {route}:")
        for name, v in spans.items():
            print(f"    {name:34} {v['p50']:8.1f} {v['p90']:8.1f}   (n={v['n']})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=256, help="jobs per batch size (chain and live processor)")
    parser.add_argument("--requests", type=int, default=20, help="chats per route for the TTFT comparison")
    parser.add_argument("--only-ttft", action="store_true", help="only the TTFT comparison and its hop table")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the TTFT comparison this many times on the same stack (each round's figures kept)")
    args = parser.parse_args()
    if args.requests > len(QUESTIONS):  # a question asked again in its scope is a cache hit, not a generated answer
        parser.error(f"--requests at most {len(QUESTIONS)}: the scope-in-use route has that many different questions")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the stack below is stopped on a kill too
    results: dict = {"machine": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(), "stages": ["privacy"],
                     "load_average_at_start": round(os.getloadavg()[0], 1)}
    if not args.only_ttft:
        results["chain_direct"] = asyncio.run(chain_direct(args.jobs))

    log_dir = Path("/tmp/genloom-bench-logs/prepare")
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stack = Stack(log_dir=log_dir, env={  # moderation off, as in the recorded runs (docs/benchmarks.md)
        "GENLOOM_MODERATION_CLASSIFIER": "none", **FAST, "GENLOOM_API_KEYS": ",".join(f"{k}:bench-{t}" for t, k in KEYS.items()),
        "GENLOOM_REQUEST_SIGNING_KEY": SIGNING_KEY, "GENLOOM_PRIVACY_KEY": PRIVACY_KEY,
        "GENLOOM_PREPARE_OFF_TENANTS": "bench-direct", "GENLOOM_GATEWAY_ROUTE": "streams"})
    stack.start_backends()
    streams = stack.add("streams", ["streams"])
    stack.add("worker-text", ["workers", "text"])
    stack.add("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(port)], port=port)
    try:
        stack.start()
        rounds = []
        for i in range(args.rounds):
            if i:  # the same prompts again: empty the semantic cache's two tiers (Redis, the processor's memory)
                stop_process(streams.proc, timeout=10)
                asyncio.run(flush(stack.redis_url))
                stack.launch(streams)
            rounds.append(asyncio.run(ttft(f"http://127.0.0.1:{port}", stack.redis_url, stack.bootstrap, args.requests)))
        results["ttft"] = rounds[-1]
        if args.rounds > 1:
            results["ttft_rounds"] = [{key: r[key] for key in ("added_ttft_p50_ms", "added_submit_to_started_p50_ms",
                                                               "added_ttft_p50_ms_scope_in_use")}
                                      | {f"started_to_first_token_p50_ms_{route}": r[route]["started_to_first_token_p50_ms"]
                                         for route in ROUTES} for r in rounds]
            for i, r in enumerate(results["ttft_rounds"]):
                print(f"round {i + 1}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
        t = results["ttft"]
        print(f"TTFT p50: stages {t['stages']['ttft_p50_ms']} ms, direct {t['direct']['ttft_p50_ms']} ms "
              f"(added {t['added_ttft_p50_ms']} ms; submit to started added {t['added_submit_to_started_p50_ms']} ms)")
        print(f"TTFT p50, stages in a scope that holds answers: {t['stages_scope_in_use']['ttft_p50_ms']} ms (added "
              f"{t['added_ttft_p50_ms_scope_in_use']} ms; submit to started added "
              f"{t['added_submit_to_started_p50_ms_scope_in_use']} ms)")
        for route in ROUTES:
            print(f"  {route}: started -> first token {t[route]['started_to_first_token_p50_ms']} ms p50, "
                  f"prompt tokens {t[route]['prompt_tokens_p50']} p50")
        print_hops(t["hops"])
        live = []
        for size in (() if args.only_ttft else BATCHES):
            stop_process(streams.proc, timeout=10)
            stack.env["GENLOOM_PREPARE_BATCH_MAX"] = str(size)
            stack.launch(streams)
            asyncio.run(burst(stack.bootstrap, 8))  # the processor joined and loaded its analyzer
            live.append({"batch_max": size, **asyncio.run(burst(stack.bootstrap, args.jobs))})
            print(f"live processor, batch_max {size:2}: {live[-1]['jobs_per_s']} jobs/s, privacy "
                  f"{live[-1]['privacy_ms_per_batch_p50']} ms p50 / {live[-1]['privacy_ms_per_batch_p99']} ms p99")
        if live:
            results["live_processor"] = live
    finally:
        stack.stop()
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    out = OUT.with_name("prepare_stages_ttft.json") if args.only_ttft else OUT  # the full run's record stays
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
