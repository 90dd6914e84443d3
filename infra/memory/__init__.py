"""Long-term memory of a user: profiles, preferences, feedback, interactions and the knowledge graph
of what the user has said (infra/memory/base.py), behind one store interface with an embedded
SQLite default and a Cassandra backend for production."""

from __future__ import annotations

from pathlib import Path

from infra.settings.memory import MemorySettings

from .base import AuditRecord, Fact, Feedback, Interaction, MemoryStore, Owner, Profile

#: the stores `GENLOOM_MEMORY_STORE` may name
STORES = ("sqlite", "cassandra")


def open_store(settings: MemorySettings, home: Path) -> MemoryStore:
    """The configured store, not yet started (call `start()`). Cassandra's driver is imported only
    when it is chosen: it is the `cassandra` extra, not a core dependency."""
    if settings.store == "sqlite":
        from .sqlite import SqliteMemoryStore

        return SqliteMemoryStore(Path(settings.sqlite_path) if settings.sqlite_path else Path(home) / "memory.db")
    if settings.store == "cassandra":
        try:
            from .cassandra import CassandraMemoryStore
        except ImportError as exc:
            raise RuntimeError(f"GENLOOM_MEMORY_STORE=cassandra needs cassandra-driver ({exc}):"
                               " pip install 'genloom[cassandra]'") from None
        hosts = [h.strip() for h in settings.cassandra_hosts.split(",") if h.strip()]
        return CassandraMemoryStore(hosts, settings.cassandra_port, settings.cassandra_keyspace,
                                    settings.cassandra_replication)
    raise ValueError(f"unknown memory store {settings.store!r} (GENLOOM_MEMORY_STORE): use one of {', '.join(STORES)}")
