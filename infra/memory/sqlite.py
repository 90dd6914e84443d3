"""The embedded memory store: one SQLite file, what `genloom up` uses with nothing to install.

One connection, used only by one worker thread: SQLite serialises writers anyway, and a single
thread needs no lock and never blocks the event loop (a call costs one hand-off, tens of
microseconds, against 1-2 ms for a thread per call). WAL journaling lets other processes read
the file while this one writes. Every table's key starts with (tenant, user_id), so a user's rows
are one index range and no query can reach past it.

Reads hide rows past `expires_at` at once; the sweep deletes them. Export and erase see every row
still stored, expired or not, because those are about what is kept, not what is served.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import AuditRecord, Fact, Feedback, Interaction, Profile
from .rows import (
    EXPIRING,
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

T = TypeVar("T")

#: most ids bound in one `IN (...)`: far under SQLite's limit of variables, and a batch a caller rarely exceeds
_IN_CHUNK = 500

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS profile (
    tenant TEXT NOT NULL, user_id TEXT NOT NULL, memory_enabled INTEGER NOT NULL, preferences TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {INTERACTIONS} (
    id TEXT NOT NULL, tenant TEXT NOT NULL, user_id TEXT NOT NULL, session TEXT, modality TEXT NOT NULL,
    prompt TEXT NOT NULL, answer TEXT, created_at REAL NOT NULL, importance REAL NOT NULL, expires_at REAL,
    PRIMARY KEY (tenant, user_id, id)
);
CREATE INDEX IF NOT EXISTS {INTERACTIONS}_recent ON {INTERACTIONS} (tenant, user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS {INTERACTIONS}_expiry ON {INTERACTIONS} (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {FACTS} (
    id TEXT NOT NULL, tenant TEXT NOT NULL, user_id TEXT NOT NULL, subject TEXT NOT NULL, relation TEXT NOT NULL,
    object TEXT NOT NULL, fact_text TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, source_job TEXT,
    created_at REAL NOT NULL, importance REAL NOT NULL, superseded_by TEXT, superseded_at REAL, expires_at REAL,
    PRIMARY KEY (tenant, user_id, id)
);
CREATE INDEX IF NOT EXISTS {FACTS}_recent ON {FACTS} (tenant, user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS {FACTS}_expiry ON {FACTS} (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {FEEDBACK} (
    id TEXT NOT NULL, tenant TEXT NOT NULL, user_id TEXT NOT NULL, job_id TEXT NOT NULL, rating INTEGER,
    correction TEXT, preference TEXT, created_at REAL NOT NULL, expires_at REAL,
    PRIMARY KEY (tenant, user_id, id)
);
CREATE INDEX IF NOT EXISTS {FEEDBACK}_recent ON {FEEDBACK} (tenant, user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS {FEEDBACK}_expiry ON {FEEDBACK} (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit (
    tenant TEXT NOT NULL, id TEXT NOT NULL, user_id TEXT, action TEXT NOT NULL, counts TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (tenant, at DESC);
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_OWNER = "tenant = ? AND user_id = ?"


def _insert(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def _select(table: str, cols: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(cols)} FROM {table}"


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


class SqliteMemoryStore:
    """The MemoryStore contract (infra/memory/base.py) over one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    # --- plumbing ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._db is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-sqlite")
        await self._run(self._open)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level=None): single statements commit at once; `_transaction` groups the rest
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against a process crash, fsyncs per checkpoint
        db.execute("PRAGMA busy_timeout=5000")  # another process holding the write lock: wait, don't fail
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)
        self._thread = None

    async def health(self) -> None:
        await self._run(lambda: self._conn().execute("SELECT 1").fetchone())

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise RuntimeError("the SQLite memory store is not started: call start() first")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the SQLite memory store is not started: call start() first")
        return self._db

    def _transaction(self, work: Callable[[sqlite3.Connection], T], begin: str = "BEGIN IMMEDIATE") -> T:
        """`work` in one transaction: IMMEDIATE takes the write lock up front (no upgrade deadlock
        with another process); a plain BEGIN is a consistent snapshot for reads."""
        db = self._conn()
        db.execute(begin)
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # --- profiles ---------------------------------------------------------------------------

    async def get_profile(self, tenant: str, user: str) -> Profile | None:
        return await self._run(self._get_profile, tenant, user)

    def _get_profile(self, tenant: str, user: str) -> Profile | None:
        row = self._conn().execute(
            f"SELECT memory_enabled, preferences, created_at, updated_at FROM profile WHERE {_OWNER}", (tenant, user)
        ).fetchone()
        if row is None:
            return None
        return Profile(tenant, user, bool(row[0]), json.loads(row[1]), row[2], row[3])

    async def put_profile(self, profile: Profile) -> None:
        await self._run(
            self._conn().execute,
            "INSERT OR REPLACE INTO profile (tenant, user_id, memory_enabled, preferences, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (profile.tenant, profile.user, int(profile.memory_enabled),
             json.dumps(profile.preferences, ensure_ascii=False), profile.created_at, profile.updated_at),
        )

    # --- interactions -----------------------------------------------------------------------

    async def put_interaction(self, item: Interaction) -> None:
        await self._run(self._conn().execute, _insert(INTERACTIONS, INTERACTION_COLUMNS), values(item))

    async def complete_interaction(self, tenant: str, user: str, id: str, answer: str) -> bool:
        cursor = await self._run(
            self._conn().execute, f"UPDATE {INTERACTIONS} SET answer = ? WHERE {_OWNER} AND id = ? AND {_LIVE}",
            (answer, tenant, user, id, time.time()),
        )
        return cursor.rowcount > 0

    async def get_interactions(self, tenant: str, user: str, ids: list[str]) -> list[Interaction]:
        found = await self._run(self._by_ids, INTERACTIONS, INTERACTION_COLUMNS, tenant, user, ids)
        return ordered({row[0]: Interaction(*row) for row in found}, ids)

    async def recent_interactions(self, tenant: str, user: str, limit: int) -> list[Interaction]:
        rows = await self._run(self._rows, f"{_select(INTERACTIONS, INTERACTION_COLUMNS)} WHERE {_OWNER} AND {_LIVE}"
                               " ORDER BY created_at DESC LIMIT ?", (tenant, user, time.time(), limit))
        return [Interaction(*row) for row in rows]

    # --- facts ------------------------------------------------------------------------------

    async def put_fact(self, fact: Fact) -> None:
        await self._run(self._conn().execute, _insert(FACTS, FACT_COLUMNS), values(fact))

    async def supersede(self, tenant: str, user: str, ids: list[str], by: str, at: float) -> int:
        marked = [i for i in dict.fromkeys(ids) if i != by]
        if not marked:
            return 0
        return await self._run(self._transaction, lambda db: sum(
            db.execute(
                f"UPDATE {FACTS} SET superseded_by = ?, superseded_at = ? WHERE {_OWNER}"
                f" AND superseded_by IS NULL AND id IN ({_placeholders(len(chunk))})",
                (by, at, tenant, user, *chunk),
            ).rowcount
            for chunk in _chunks(marked)
        ))

    async def facts(self, tenant: str, user: str, *, current_only: bool = True) -> list[Fact]:
        current = " AND superseded_by IS NULL" if current_only else ""
        rows = await self._run(self._rows, f"{_select(FACTS, FACT_COLUMNS)} WHERE {_OWNER} AND {_LIVE}{current}"
                               " ORDER BY created_at DESC", (tenant, user, time.time()))
        return [Fact(*row) for row in rows]

    async def get_facts(self, tenant: str, user: str, ids: list[str]) -> list[Fact]:
        found = await self._run(self._by_ids, FACTS, FACT_COLUMNS, tenant, user, ids)
        return ordered({row[0]: Fact(*row) for row in found}, ids)

    # --- feedback ---------------------------------------------------------------------------

    async def put_feedback(self, item: Feedback) -> None:
        await self._run(self._conn().execute, _insert(FEEDBACK, FEEDBACK_COLUMNS), values(item))

    async def feedback(self, tenant: str, user: str) -> list[Feedback]:
        """Newest first."""
        rows = await self._run(self._rows, f"{_select(FEEDBACK, FEEDBACK_COLUMNS)} WHERE {_OWNER} AND {_LIVE}"
                               " ORDER BY created_at DESC", (tenant, user, time.time()))
        return [Feedback(*row) for row in rows]

    # --- privacy: export, erase, retention, audit ---------------------------------------------

    async def export(self, tenant: str, user: str) -> dict:
        return await self._run(self._transaction, lambda db: self._export(tenant, user), "BEGIN")

    def _export(self, tenant: str, user: str) -> dict:
        def every(table: str, cols: tuple[str, ...]) -> list[tuple]:
            return self._rows(f"{_select(table, cols)} WHERE {_OWNER} ORDER BY created_at DESC", (tenant, user))

        return export_document(
            self._get_profile(tenant, user),
            [Interaction(*r) for r in every(INTERACTIONS, INTERACTION_COLUMNS)],
            [Fact(*r) for r in every(FACTS, FACT_COLUMNS)],
            [Feedback(*r) for r in every(FEEDBACK, FEEDBACK_COLUMNS)],
        )

    async def erase(self, tenant: str, user: str) -> dict[str, int]:
        return await self._run(self._transaction, lambda db: {
            kind: db.execute(f"DELETE FROM {kind} WHERE {_OWNER}", (tenant, user)).rowcount
            for kind in (PROFILE, *EXPIRING)
        })

    async def sweep(self, now: float) -> dict[str, int]:
        return await self._run(self._transaction, lambda db: {
            kind: db.execute(f"DELETE FROM {kind} WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)).rowcount
            for kind in EXPIRING
        })

    async def put_audit(self, record: AuditRecord) -> None:
        await self._run(
            self._conn().execute,
            "INSERT OR REPLACE INTO audit (tenant, id, user_id, action, counts, at) VALUES (?, ?, ?, ?, ?, ?)",
            (record.tenant, record.id, record.user, record.action, json.dumps(record.counts), record.at),
        )

    async def audits(self, tenant: str, user: str | None = None) -> list[AuditRecord]:
        """Newest first; all of the tenant's when `user` is None."""
        where, args = ("tenant = ?", (tenant,)) if user is None else (_OWNER, (tenant, user))
        rows = await self._run(self._rows, f"SELECT id, tenant, user_id, action, counts, at FROM audit WHERE {where}"
                               " ORDER BY at DESC", args)
        return [AuditRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    # --- helpers (worker thread) --------------------------------------------------------------

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        return self._conn().execute(sql, args).fetchall()

    def _by_ids(self, table: str, cols: tuple[str, ...], tenant: str, user: str, ids: list[str]) -> list[tuple]:
        now = time.time()
        rows: list[tuple] = []
        for chunk in _chunks(list(dict.fromkeys(ids))):
            rows += self._rows(f"{_select(table, cols)} WHERE {_OWNER} AND {_LIVE} AND id IN ({_placeholders(len(chunk))})",
                               (tenant, user, now, *chunk))
        return rows


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + _IN_CHUNK] for i in range(0, len(ids), _IN_CHUNK)]
