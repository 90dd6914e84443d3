"""Settings of the systems every process talks to: the event log, Redis, topics, local storage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    idle_poll_ms: int = Field(
        default=1000, ge=0,
        description="After a fetch that brought nothing, an idle consumer waits up to this long between fetches, or"
        " until a producer rings the topic's Redis doorbell, while its process's doorbell listener does not yet hear"
        " every topic it fetches (starting, a new topic, Redis reconnecting; then `heard_poll_ms`); 0 polls without"
        " pause (needs Redis).",
    )
    heard_poll_ms: int = Field(
        default=5000, ge=1,
        description="Once a process's doorbell listener hears every topic it fetches, after a fetch that brought"
        " nothing a consumer waits up to this long for a ring before it fetches again (`idle_poll_ms` applies"
        " until then). Every genloom producer rings, so this only bounds the wait for a record from a producer"
        " that does not (not genloom's: PUBLISH to the Redis channel `genloom:doorbell:<topic>`"
        " after each send, or lower this) and for a ring lost to a failed PUBLISH. Each idle consumer's fetch is a"
        " request the broker answers: 5000 against 1000 took an idle `genloom up` from 5.9% to 3.2% of one core, with no rise in pickup p50.",
    )
    busy_s: float = Field(default=2.0, ge=0, description="Quiet time after which a process's consumers count as idle"
                          " (`busy_poll_ms` no longer applies).")
    busy_poll_ms: int = Field(
        default=50, ge=0,
        description="While busy and before the process's doorbell listener hears every topic it fetches (starting,"
        " a new topic, Redis reconnecting), after a fetch that brought nothing a consumer waits up to this long for"
        " the topic's doorbell before it fetches again, since a ring may be missed then (a fetch after data goes at"
        " once; once every topic is heard, the wait is `heard_poll_ms`). 0 fetches back to back while busy (more"
        " CPU: the bundled broker holds every fetch for the whole fetch wait).",
    )
    rung_fetch_wait_ms: int = Field(
        default=0, ge=0,
        description="While the doorbell paces a process (its listener hears every topic it fetches), a fetch asks the"
        " broker to wait at most this long for data, and one that brings nothing waits for a ring in the process"
        " instead; 0 keeps `fetch_max_wait_ms`. The bundled broker does not end a wait when data arrives, so a record"
        " produced while the fetch after one with data is held waits for the hold's end: at a record every 5 ms, 1"
        " took a hop from 4.3 to 2.4 ms p50 (bench/kafka_hop.py --gap-ms 5). Off by default: whether it costs"
        " throughput under load (the hold hands a worker the jobs that arrive within it together) is not settled;"
        " 16 concurrent chats on the built-in engine made 5% fewer tokens/s with it in five pairs of runs, within the"
        " noise of the host that ran them (bench/idle_cpu.py). The bundled broker never answers a wait"
        " of 0, hence 1 at least when set.",
    )
    session_timeout_ms: int = Field(default=6000, ge=1000, description="Consumer group session.")
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest message genloom produces or accepts."
    )
    broker_port: int = Field(default=0, description="Port of the bundled broker; 0 picks one.")
    bundled_recycle_batches: int = Field(
        default=1000, ge=0,
        description="`genloom up` restarts the bundled broker, emptied, once a partition holds this many record batches,"
        " no job is in flight and every consumer group has read it all (the state clients ask for is in Redis and the"
        " stores by then). The broker reads a partition from its first batch at every fetch, so its CPU grows with"
        " each one, and past about 10,000 (fewer on a busy CPU) a partition's end is no longer served; a worker sends"
        " each token event alone, a batch each. 0: never.",
    )
    bundled_recycle_force_batches: int = Field(
        default=4000, ge=0,
        description="From this many record batches in a partition the bundled broker is restarted even with jobs in"
        " flight: they end with a retryable failed event (job_lost) instead of hanging. 0: never.",
    )
    bundled_fill_check_s: float = Field(
        default=5.0, gt=0, description="How often `genloom up` reads how full the bundled broker's partitions are.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients connect: TLS (SSL), SASL, both (SASL_SSL) or neither."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) that signed the brokers' certificates; unset uses the system's."
    )
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: Path | None = Field(default=None, description="Private key (PEM) of the client certificate.")
    ssl_key_password: SecretStr | None = Field(default=None, description="Password of the client key, if any.")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")


class SigningSettings(BaseSettings):
    """The key the gateway signs job requests with and the workers and routing verify (shared by all)."""

    model_config = _config("GENLOOM_")

    request_signing_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of request signatures; set the same one on every process. Unset: nothing is"
        " signed or checked (`genloom up` generates one for its processes).",
    )

    @property
    def key(self) -> bytes | None:
        return self.request_signing_key.get_secret_value().encode() if self.request_signing_key else None


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
    replication: int = Field(
        default=1, ge=1, description="Replication factor of the topics `genloom topics --create` makes (3 on a"
        " production cluster; the bundled broker has one node).")


class StorageSettings(BaseSettings):
    """Where local state and model caches live (never inside the repository)."""

    model_config = _config("GENLOOM_")

    home: Path = Field(
        default=Path.home() / ".genloom", description="State folder of the embedded default."
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "genloom",
        description="Model cache (dequantised and generated test weights, kernels built for this machine).",
    )


class MetricsSettings(BaseSettings):
    """Prometheus `/metrics` of the workers and stream processors (the gateway serves it on its own port)."""

    model_config = _config("GENLOOM_METRICS_")

    port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port of this process's /metrics; unset: not served (collected anyway); 0 picks a free one."
        " `genloom up` gives each process its own.",
    )
    host: str = Field(default="127.0.0.1", description="Address /metrics listens on (0.0.0.0 in a pod).")


class TracingSettings(BaseSettings):
    """OpenTelemetry traces of every process (infra.tracing)."""

    model_config = _config("GENLOOM_TRACING_")

    exporter: Literal["none", "otlp", "file", "console"] = Field(
        default="none", description="Where spans go: none (off), otlp (OTEL_EXPORTER_OTLP_ENDPOINT, HTTP), file"
        " (JSON lines in GENLOOM_TRACING_FILE) or console.")
    file: Path | None = Field(default=None, description="The JSON-lines file of the `file` exporter.")
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of traces kept (by trace id).")
