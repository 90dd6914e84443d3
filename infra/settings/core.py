"""Settings of the systems every process talks to: the event log, Redis, topics, local storage."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True)


class KafkaSettings(BaseSettings):
    """Where the event log is and how clients talk to it."""

    model_config = _config("GENLOOM_KAFKA_")

    bootstrap: str | None = Field(
        default=None,
        description="host:port list of an external Kafka; unset starts the bundled broker.",
    )
    client_id: str = Field(default="genloom", description="Client id prefix.")
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=1,
        description="Long-poll wait; the bundled broker never wakes pollers early, so keep it low.",
    )
    session_timeout_ms: int = Field(default=6000, ge=1000, description="Consumer group session.")
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest message genloom produces or accepts."
    )
    broker_port: int = Field(default=0, description="Port of the bundled broker; 0 picks one.")


class RedisSettings(BaseSettings):
    """Session cache, replay logs and job records."""

    model_config = _config("GENLOOM_REDIS_")

    url: str | None = Field(
        default=None, description="redis:// URL; unset starts a local redis-server."
    )
    port: int = Field(default=0, description="Port of the local redis-server; 0 picks one.")


class TopicSettings(BaseSettings):
    """Partition counts, fixed when the topics are created."""

    model_config = _config("GENLOOM_TOPICS_")

    partitions: int = Field(default=8, ge=1, description="Partitions of request and event topics.")
    job_partitions: int = Field(default=4, ge=1, description="Partitions of each job topic.")


class StorageSettings(BaseSettings):
    """Where local state and model caches live (never inside the repository)."""

    model_config = _config("GENLOOM_")

    home: Path = Field(
        default=Path.home() / ".genloom", description="State folder of the embedded default."
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "genloom",
        description="Model cache (dequantised and generated test weights).",
    )
