"""What the gateway spends in Redis before it publishes a job, beside the code it replaced, in one process.

A new job is admitted (record, in-flight slot, the tenant's recent-jobs index) and its `accepted` becomes the
first entry of its replay log before the request goes to Kafka. Since this bench was written, admission applies
`accepted` in its own script call (`JobStore.admit(first=...)`); before, `JobStore.apply` wrote it in a second
round trip. Both sides run against one real redis-server, alternating, `--rounds` times, `--jobs` new jobs each
(each of a tenant of its own); the figure is the median of the rounds' medians. Both sides must leave the same
replay log and record fields, or the bench stops. Writes ``bench/results/admission_cost.json``.

    python bench/admission_cost.py [--rounds 7] [--jobs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_model  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.jobrecord import JobRecord  # noqa: E402
from infra.redis.jobstore import Admitted, JobStore  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from schemas.enums import EventSource, JobStatus, Modality  # noqa: E402
from schemas.events import Accepted  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "admission_cost.json"
WAYS = ("genloom", "baseline")


def new_job() -> tuple[str, JobRecord, tuple[Accepted, bytes]]:
    tenant, job = f"t{uuid.uuid4().hex[:8]}", f"j{uuid.uuid4().hex}"
    record = JobRecord(status=JobStatus.QUEUED, tenant=tenant, modality=Modality.TEXT, fingerprint="f",
                       model="smollm2-135m-instruct", created_at=time.time(), unacked=True)
    accepted = Accepted(job_id=job, seq=0, source=EventSource.GATEWAY, tenant=tenant, modality=Modality.TEXT,
                        model="smollm2-135m-instruct")
    return job, record, (accepted, accepted.model_dump_json().encode())


async def submit(store: JobStore, way: str, job: str, record: JobRecord, accepted: tuple[Accepted, bytes]) -> None:
    now = record.created_at
    if way == "genloom":
        outcome = await store.admit(job, record, max_inflight=16, now=now, first=accepted)
    else:  # before: admission, then `accepted` applied in a round trip of its own
        outcome = await store.admit(job, record, max_inflight=16, now=now)
        await store.apply(*accepted, now)
    assert outcome == Admitted()


async def shape(store: JobStore, job: str) -> tuple:
    """What a side left: the replay log's entries and the record's fields but the time-dependent ones."""
    record = await store.load(job)
    return ([(e.id, e.type, e.data) for e in await store.entries(job)],
            (record.status, record.last_event_id, record.slot_held, record.unacked))


async def run(url: str, rounds: int, jobs: int) -> dict:
    store = JobStore(connect(url))
    medians: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        for way in WAYS:
            times = []
            for _ in range(jobs):
                job, record, accepted = new_job()
                began = time.perf_counter()
                await submit(store, way, job, record, accepted)
                times.append((time.perf_counter() - began) * 1000)
            medians[way].append(statistics.median(times))
    left = {}
    for way in WAYS:  # one job each with the same content: both sides must leave the same log and record
        job, record, accepted = new_job()
        await submit(store, way, job, record, accepted)
        entries, fields = await shape(store, job)
        left[way] = ([(i, t) for i, t, _ in entries], fields, [json.loads(d) | {"job_id": "", "tenant": "", "ts": 0}
                                                              for _, _, d in entries])
    if left["genloom"] != left["baseline"]:
        raise SystemExit(f"the two sides left different replay logs or records: {left}")
    return {way: {"median_ms": round(statistics.median(m), 3), "rounds_ms": [round(x, 3) for x in m]}
            for way, m in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=300, help="new jobs per side per round")
    args = parser.parse_args()
    with LocalRedis() as redis:
        costs = asyncio.run(run(redis.url, args.rounds, args.jobs))
    results = {"cpu": cpu_model(), "python": platform.python_version(), "rounds": args.rounds, "jobs": args.jobs,
               "costs": costs}
    ours, theirs = costs["genloom"]["median_ms"], costs["baseline"]["median_ms"]
    print(f"admission with accepted: genloom {ours:.3f} ms (one call), before {theirs:.3f} ms (two), "
          f"{theirs / ours:.2f}x")
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
