"""Edge fan-out at scale: latency the gateway adds per event at 10 and 100 concurrent SSE streams,
with the shared replay reader against the per-stream reader it replaced, measured in the same run.

One run starts a redis-server on a free port and, per reader mode, a gateway process
(`GENLOOM_GATEWAY_REPLAY_READER=per_stream | shared`, uvicorn on uvloop as `python -m gateway` runs).
This process admits the jobs and holds one SSE stream per job (httpx); a writer process of its own
(as the fan-out is) writes each job's token events into its replay log through the fan-out's own
call (`JobStore.apply`, one Lua call per event, which also publishes the entry) at `--rate` events
a second per stream, phases spread at random. Each event carries the
time it was written (`ts`, set just before the write): latency = SSE receipt - ts, so it holds the
write's round trip (printed apart), the gateway's read and the SSE hop.

Prints p50/p99 per mode side by side and writes ``bench/results/edge_fanout.json``.

    python bench/edge_fanout.py [--streams 10 100] [--rate 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvloop  # noqa: E402

from bench.common import cpu_s, machine, summary  # noqa: E402
from infra.procs import free_port, stop_process, wait_for_port  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.jobrecord import JobRecord  # noqa: E402
from infra.redis.jobstore import JobStore  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from schemas.enums import EventSource, JobStatus, Modality  # noqa: E402
from schemas.events import Accepted, Completed, TokenDelta  # noqa: E402
from schemas.requests import scoped_job_id  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "edge_fanout.json"
KEY, TENANT = "glk_bench-edge-fanout", "bench"
MODES = ("per_stream", "shared")


# -- the gateway process ----------------------------------------------------------------------------


class _NoProducer:
    """The gateway's producer: this benchmark submits nothing through Kafka."""

    class client:  # noqa: N801 - the attribute aiokafka's producer has
        @staticmethod
        async def force_metadata_update() -> bool:
            return True


def serve(redis_url: str, port: int) -> None:
    """Run a gateway over `redis_url` on `port` until SIGTERM (settings from the environment)."""
    import uvicorn

    from gateway.app import create_app
    from gateway.auth import ApiKeys
    from infra.models.catalog import TextModelCatalog
    from infra.settings.gateway import GatewaySettings

    settings = GatewaySettings()
    redis = connect(redis_url, max_connections=settings.redis_max_connections,
                    socket_timeout_s=settings.redis_socket_timeout_s)
    app = create_app(settings, redis=redis, producer=_NoProducer(), api_keys=ApiKeys([(KEY, TENANT)]),
                     text_models=TextModelCatalog([]))
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning",
                lifespan="off")


def start_gateway(redis_url: str, mode: str, streams: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GENLOOM_GATEWAY_REPLAY_READER=mode, GENLOOM_GATEWAY_MAX_SSE_PER_TENANT=str(streams + 10),
               GENLOOM_GATEWAY_SSE_KEEPALIVE_S="2",
               # the per-stream reader holds one pooled connection per open stream
               GENLOOM_GATEWAY_REDIS_MAX_CONNECTIONS=str(streams + 32))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", redis_url, str(port)], env=env,
                            start_new_session=True)
    wait_for_port(port, 60, proc)
    return proc, f"http://127.0.0.1:{port}"


# -- this process: jobs, the writer, the SSE clients ------------------------------------------------


async def admit(store: JobStore, n: int) -> list[str]:
    """`n` jobs of the tenant with their `accepted` entry: the tenant's ids."""
    ids = []
    for _ in range(n):
        job_id = f"fan-{uuid.uuid4().hex[:12]}"
        internal = scoped_job_id(TENANT, job_id)
        await store.admit(internal, JobRecord(status=JobStatus.QUEUED, tenant=TENANT, client_id=job_id,
                                              modality=Modality.TEXT, fingerprint="f"), max_inflight=10_000)
        accepted = Accepted(job_id=internal, seq=0, source=EventSource.GATEWAY, tenant=TENANT, client_job_id=job_id,
                            modality=Modality.TEXT)
        await store.apply(accepted, accepted.model_dump_json().encode(), time.time())
        ids.append(job_id)
    return ids


async def follow(http: httpx.AsyncClient, job_id: str, latencies: list[float], connected: asyncio.Event) -> int:
    """Read the job's SSE stream to its end: each token's latency (ms); the number of tokens read."""
    tokens, buffer = 0, b""
    async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {KEY}"}) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            now = time.time()
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:  # hot loop: one pass over the frames of a chunk
                if b"event: accepted" in frame:
                    connected.set()
                elif b"event: token" in frame:
                    data = json.loads(frame.split(b"\ndata: ", 1)[1])
                    latencies.append((now - data["ts"]) * 1000)
                    tokens += 1
                elif b"event: completed" in frame:
                    return tokens
    return tokens


async def write(store: JobStore, job_id: str, rate: float, seconds: float, writes: list[float]) -> int:
    """Token events at `rate` a second for `seconds` (random phase), then `completed`; events written."""
    internal = scoped_job_id(TENANT, job_id)
    gap = 1 / rate
    await asyncio.sleep(random.uniform(0, gap))
    start, seq = time.monotonic(), 1
    while seq <= rate * seconds:
        event = TokenDelta(job_id=internal, seq=seq, source=EventSource.WORKER, text="x", tokens=1)
        began = time.perf_counter()
        await store.apply(event, event.model_dump_json().encode(), time.time())
        writes.append((time.perf_counter() - began) * 1000)
        seq += 1
        await asyncio.sleep(max(0.0, start + (seq - 1) * gap - time.monotonic()))
    done = Completed(job_id=internal, seq=seq, source=EventSource.WORKER)
    await store.apply(done, done.model_dump_json().encode(), time.time())
    return seq - 1


async def write_all(redis_url: str, jobs: list[str], rate: float, seconds: float) -> dict:
    """The writer process: every job's tokens, then `completed`; the events written and the writes' round trips."""
    redis = connect(redis_url, max_connections=len(jobs) + 4)
    try:
        store, writes = JobStore(redis), []
        written = await asyncio.gather(*(write(store, job, rate, seconds, writes) for job in jobs))
        return {"events": sum(written), "write_round_trip": summary(writes)}
    finally:
        await redis.aclose()


async def scenario(redis_url: str, mode: str, streams: int, rate: float, seconds: float) -> dict:
    proc, url = start_gateway(redis_url, mode, streams)
    redis = connect(redis_url)
    try:
        jobs = await admit(JobStore(redis), streams)
        latencies: list[float] = []
        connected = [asyncio.Event() for _ in jobs]
        limits = httpx.Limits(max_connections=streams + 5, max_keepalive_connections=streams + 5)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            readers = [asyncio.create_task(follow(http, job, latencies, seen)) for job, seen in zip(jobs, connected)]
            await asyncio.wait_for(asyncio.gather(*(seen.wait() for seen in connected)), 60)
            await asyncio.sleep(0.5)  # every stream is blocked on its log now
            load, cpu_before = os.getloadavg()[0], cpu_s(proc.pid)
            # the writer is a process of its own, as the fan-out is: its loop is not this one's
            writer = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--write", redis_url, str(rate), str(seconds), *jobs,
                stdout=asyncio.subprocess.PIPE)
            out, _ = await writer.communicate()
            wrote = json.loads(out)
            read = await asyncio.wait_for(asyncio.gather(*readers), 60)
            gateway_cpu = cpu_s(proc.pid) - cpu_before
        return {"mode": mode, "streams": streams, "events_written": wrote["events"], "events_read": sum(read),
                "load_1m_at_start": round(load, 2), "gateway_cpu_s": round(gateway_cpu, 2),
                "gateway_cpu_us_per_event": round(gateway_cpu * 1e6 / max(1, sum(read)), 1),
                "write_round_trip": wrote["write_round_trip"], "added": summary(latencies)}
    finally:
        await redis.aclose()
        stop_process(proc, timeout=10)


async def main(args: argparse.Namespace) -> dict:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"before measuring: {uptime}")
    results = []
    with LocalRedis() as server:
        for streams in args.streams:
            for mode in args.modes:  # both modes per size, back to back, against the same Redis
                row = await scenario(server.url, mode, streams, args.rate, args.seconds)
                a = row["added"]
                print(f"{mode:>10} {streams:>4} streams: {row['events_read']}/{row['events_written']} events, "
                      f"p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms (write {row['write_round_trip']['p50_ms']} ms p50,"
                      f" gateway CPU {row['gateway_cpu_us_per_event']} us/event, load {row['load_1m_at_start']})")
                results.append(row)
    return {
        "benchmark": "edge_fanout",
        "what": "ms from an event's write into its job's Redis replay log (the fan-out's JobStore.apply, ts set just "
                "before it) to its receipt by an SSE client (httpx) of a gateway process; per_stream = one blocking "
                "XREAD per open stream (the former path), shared = one reader task per gateway process",
        "machine": machine(),
        "uptime_before": uptime,
        "rate_per_stream": args.rate, "seconds": args.seconds,
        "results": results,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[10, 100], help="concurrent SSE streams")
    parser.add_argument("--rate", type=float, default=10.0, help="token events a second per stream")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each stream is written")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="reader modes to measure")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--serve", nargs=2, metavar=("REDIS_URL", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        url, rate, seconds, *jobs = args.write
        print(json.dumps(uvloop.run(write_all(url, jobs, float(rate), float(seconds)))))
        return
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    report = uvloop.run(main(args))
    print(f"{'streams':>8} | {'per-stream p50':>14} {'p99':>8} | {'shared p50':>10} {'p99':>8}")
    by = {(r["mode"], r["streams"]): r["added"] for r in report["results"]}
    for streams in args.streams:
        old, new = by.get(("per_stream", streams), {}), by.get(("shared", streams), {})
        print(f"{streams:>8} | {old.get('p50_ms', '-'):>14} {old.get('p99_ms', '-'):>8} | {new.get('p50_ms', '-'):>10}"
              f" {new.get('p99_ms', '-'):>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
