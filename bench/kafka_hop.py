"""One Kafka hop between two genloom processes on the bundled broker, and where its time goes.

Every stage boundary of a job is such a hop (gateway -> preparation -> worker; worker -> moderation gate
-> fan-out), so its floor bounds what genloom can add to a time to first token. A producer process sends
one record every `--gap-ms` through genloom's producer (acks=all, the doorbell rung on each ack); a
consumer process reads them through genloom's consumer. Per record, from each process's own clock
(one machine, one clock):

- send -> ack: the broker acknowledging the produce;
- ack -> ring heard: the producer's PUBLISH on the topic's doorbell channel reaching the consumer's
  listener (`infra.kafka.doorbell`);
- ring -> fetch out: the paced fetch leaving once woken;
- fetch out -> back: the broker answering the fetch that brought the record;
- ack -> consumer: the whole hop after the acknowledgement, to the record in the consumer's hands.

The baseline in the same run is the consumer unpaced (`GENLOOM_KAFKA_IDLE_POLL_MS=0`: fetching back to
back, each fetch held by the broker up to `fetch_max_wait_ms`, how consumers ran before the doorbell).
Modes alternate over `--rounds`, each on a topic of its own, one broker and Redis for the run. `--modes
short,doorbell` measures instead what a short broker wait of paced fetches does (`short`:
GENLOOM_KAFKA_RUNG_FETCH_WAIT_MS=1 against the default's fetch held for the consumer's `fetch_max_wait_ms`);
it shows once records come faster than that wait (`--gap-ms 5`).

Writes ``bench/results/kafka_hop.json``.

    python bench/kafka_hop.py [--records 150] [--gap-ms 50] [--rounds 2] [--modes doorbell,unpaced] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, pct  # noqa: E402

OUT = ROOT / "bench" / "results" / "kafka_hop.json"
#: records sent before the measured ones (group join, first fetches, the listener's subscription)
WARMUP = 10
MODES = {"doorbell": {}, "unpaced": {"GENLOOM_KAFKA_IDLE_POLL_MS": "0"},
         # paced, and each fetch asks the broker to wait 1 ms instead of the consumer's fetch_max_wait_ms (an
         # empty answer waits for a ring in the process): not run unless named in --modes
         "short": {"GENLOOM_KAFKA_RUNG_FETCH_WAIT_MS": "1"}}


async def consume(bootstrap: str, topic: str, count: int, out: Path) -> None:
    """Read `count` records of `topic`; per record its receipt time and, when the consumer is paced, the
    ring, fetch-out and fetch-back times of the fetch that brought it."""
    import aiokafka.conn as conn

    from infra.kafka import doorbell
    from infra.kafka.clients import consumer, start_client

    marks: dict[str, float] = {}
    ring = doorbell.Pacer.ring

    def heard(self, name: str) -> None:
        marks["ring"] = time.time()
        ring(self, name)

    doorbell.Pacer.ring = heard
    send = conn.AIOKafkaConnection.send

    def timed(self, request, expect_response=True):
        future = send(self, request, expect_response)
        if type(request).__name__.startswith("FetchRequest"):
            out_at = time.time()

            async def answered():
                response = await future
                marks["fetch_out"], marks["fetch_back"] = out_at, time.time()
                return response
            return answered()
        return future

    conn.AIOKafkaConnection.send = timed
    reader = consumer(bootstrap, topic, group_id=f"hop-{topic}")
    await start_client(reader, bootstrap)
    rows = []
    try:
        while len(rows) < count:
            batches = await reader.getmany(timeout_ms=60_000)
            now = time.time()
            for messages in batches.values():
                rows += [{"i": int(m.value), "received": now, **marks} for m in messages]
    finally:
        await reader.stop()
    out.write_text(json.dumps(rows))


async def produce(bootstrap: str, topic: str, count: int, gap_s: float, out: Path) -> None:
    from infra.kafka.clients import producer, start_client

    writer = producer(bootstrap)
    await start_client(writer, bootstrap)
    rows = []
    try:
        for i in range(count):
            sent = time.time()
            await (await writer.send(topic, str(i).encode(), key=b"hop"))
            rows.append({"i": i, "sent": sent, "acked": time.time()})
            await asyncio.sleep(gap_s)
        await asyncio.sleep(0.5)  # the last ring goes out
    finally:
        await writer.stop()
    out.write_text(json.dumps(rows))


def one(mode: str, bootstrap: str, redis_url: str, records: int, gap_ms: float, work: Path) -> dict:
    """Both processes for one mode on a fresh topic; the per-record parts, summarised."""
    from infra.kafka.clients import ensure_topics
    from infra.kafka.topics import TopicSpec

    topic = f"bench-hop-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, 1, "job_id", "bytes", "bench")]))
    env = dict(os.environ, GENLOOM_REDIS_URL=redis_url, PYTHONPATH=str(ROOT), **MODES[mode])
    count = records + WARMUP
    received, sent = work / f"{topic}.recv.json", work / f"{topic}.sent.json"
    reader = subprocess.Popen([sys.executable, __file__, "--role", "consumer", "--bootstrap", bootstrap, "--topic", topic,
                               "--count", str(count), "--file", str(received)], env=env)
    time.sleep(3)  # the consumer joins its group; the warm-up records cover the rest
    subprocess.run([sys.executable, __file__, "--role", "producer", "--bootstrap", bootstrap, "--topic", topic,
                    "--count", str(count), "--gap-ms", str(gap_ms), "--file", str(sent)], env=env, check=True)
    reader.wait(timeout=120)
    got = {r["i"]: r for r in json.loads(received.read_text())}
    parts: dict[str, list[float]] = {k: [] for k in ("send_ack", "ack_ring", "ring_fetch", "fetch", "ack_consumer",
                                                     "send_consumer")}
    for s in json.loads(sent.read_text())[WARMUP:]:
        r = got[s["i"]]
        parts["send_ack"].append(s["acked"] - s["sent"])
        parts["ack_consumer"].append(r["received"] - s["acked"])
        parts["send_consumer"].append(r["received"] - s["sent"])
        if "ring" in r and s["sent"] <= r["ring"] <= r.get("fetch_out", 0):  # the ring of this record woke its fetch
            parts["ack_ring"].append(r["ring"] - s["acked"])
            parts["ring_fetch"].append(r["fetch_out"] - r["ring"])
        if r.get("fetch_out", 0) >= s["sent"]:
            parts["fetch"].append(r["fetch_back"] - r["fetch_out"])
    return {k: {"n": len(v), "p50_ms": round(pct(v, 0.5) * 1000, 2), "p90_ms": round(pct(v, 0.9) * 1000, 2)}
            for k, v in parts.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=150)
    parser.add_argument("--gap-ms", type=float, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="doorbell,unpaced", help="comma-separated, of: " + ", ".join(MODES))
    parser.add_argument("--out", type=Path, default=OUT, help="results file (an A/B of a setting: not the report's)")
    parser.add_argument("--role", choices=("consumer", "producer"), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.modes.split(",")) - MODES.keys()
    if unknown:
        parser.error(f"unknown --modes {', '.join(sorted(unknown))}: choose from {', '.join(MODES)}")
    if args.role == "consumer":
        return asyncio.run(consume(args.bootstrap, args.topic, args.count, args.file))
    if args.role == "producer":
        return asyncio.run(produce(args.bootstrap, args.topic, args.count, args.gap_ms / 1000, args.file))

    import tempfile

    from infra.kafka.broker import LocalBroker
    from infra.redis.server import LocalRedis

    results = {"cpu": cpu_model(), "cpus": os.cpu_count(), "records": args.records, "gap_ms": args.gap_ms,
               "load_start": os.getloadavg()[0], "rounds": []}
    with LocalBroker() as broker, LocalRedis() as redis, tempfile.TemporaryDirectory() as work:
        for r in range(args.rounds):
            row = {}
            for mode in args.modes.split(","):
                row[mode] = one(mode, broker.bootstrap, redis.url, args.records, args.gap_ms, Path(work))
                print(f"round {r + 1} {mode:9} " + "  ".join(f"{k} {v['p50_ms']:.2f}/{v['p90_ms']:.2f}"
                                                             for k, v in row[mode].items()), flush=True)
            results["rounds"].append(row)
    results["load_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} (p50/p90 ms)")


if __name__ == "__main__":
    sys.exit(main())
