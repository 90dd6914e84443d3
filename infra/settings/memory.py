"""Settings of long-term memory: its stores (read by the streams process and the gateway), the
enrichment stage and the memory writer (streams/enrichment, streams/memory)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _names(value: str) -> frozenset[str]:
    return frozenset(n.strip() for n in value.split(",") if n.strip())


class MemorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_MEMORY_", extra="ignore", frozen=True)

    enabled: bool = Field(
        default=True, description="Remember users' interactions and facts, and enrich prompts with them."
    )
    off_tenants: str = Field(default="", description="Comma-separated tenants whose users are never remembered.")
    store: str = Field(
        default="sqlite", description="Profile, fact and interaction store: `sqlite` (embedded) or `cassandra`."
    )
    sqlite_path: str = Field(default="", description="SQLite file; empty: memory.db under GENLOOM_HOME.")
    cassandra_hosts: str = Field(default="127.0.0.1", description="Comma-separated Cassandra contact points.")
    cassandra_port: int = Field(default=9042, ge=1, le=65535, description="Cassandra native transport port.")
    cassandra_keyspace: str = Field(default="genloom", description="Keyspace (created if missing).")
    cassandra_replication: int = Field(
        default=1, ge=1, description="SimpleStrategy replication factor of a new keyspace."
    )
    vectors: str = Field(default="embedded", description="Vector index: `embedded` (on disk) or `weaviate`.")
    vector_path: str = Field(default="", description="Embedded index folder; empty: vectors/ under GENLOOM_HOME.")
    weaviate_url: str = Field(default="", description="Weaviate HTTP URL (for `weaviate`), e.g. http://weaviate:8080.")
    weaviate_grpc_port: int = Field(default=50051, ge=1, le=65535, description="Weaviate gRPC port.")
    retention_days: float = Field(default=365.0, gt=0, description="Days a memory is kept before the sweep deletes it.")
    tenant_retention_days: str = Field(
        default="",
        description="Per-tenant retention overriding GENLOOM_MEMORY_RETENTION_DAYS, as `tenant=days` pairs separated by"
        " commas (e.g. `acme=30,beta=7`).",
    )
    sweep_interval_s: float = Field(default=3600.0, gt=0, description="Seconds between retention sweeps.")
    top_k: int = Field(default=8, ge=1, le=100, description="Most memories put into one prompt.")
    budget_tokens: int = Field(default=256, ge=16, description="Most tokens of memory put into one prompt.")
    timeout_ms: float = Field(
        default=150.0,
        gt=0,
        description="Longest a job's enrichment waits on the stores;"
        " past it the job goes on without memory (and its events say so).",
    )
    session_turns: int = Field(default=8, ge=0, description="Recent turns of a session kept in Redis (0: none).")
    session_ttl_s: int = Field(default=3600, ge=1, description="Expiry of a session's recent turns after its last one.")

    erase_wait_s: float = Field(
        default=10.0, ge=0, description="How long DELETE /v1/users/{id}/data waits for the erasure before it answers"
        " 202 with a URL to follow it."
    )

    @model_validator(mode="after")
    def _retention_pairs_parse(self) -> MemorySettings:
        self._tenant_days()  # a malformed list is an error at start, not at the first job
        return self

    def remembers(self, tenant: str) -> bool:
        return self.enabled and tenant not in _names(self.off_tenants)

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0

    def retention_days_for(self, tenant: str) -> float:
        return self._tenant_days().get(tenant, self.retention_days)

    def retention_s_for(self, tenant: str) -> float:
        return self.retention_days_for(tenant) * 86400.0

    def _tenant_days(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pair in self.tenant_retention_days.split(","):
            if not pair.strip():
                continue
            tenant, sep, days = pair.partition("=")
            try:
                value = float(days)
            except ValueError:
                value = -1.0
            if not sep or not tenant.strip() or not value > 0:
                raise ValueError(f"GENLOOM_MEMORY_TENANT_RETENTION_DAYS: {pair.strip()!r} is not `tenant=days` with"
                                 " days > 0")
            out[tenant.strip()] = value
        return out
