"""aiokafka producer, consumer and admin factories tuned for genloom and the bundled broker.

The bundled broker ignores the idempotent producer (InitProducerId fails) and never wakes a
long-polling consumer early, so producers are plain acks=all and consumers poll with a short
``fetch_max_wait_ms``. Delivery is at-least-once; consumers commit only after their side effects.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from infra.settings import KafkaSettings

from .compat import harden
from .doorbell import patch_fetcher, ring_after
from .topics import TopicSpec


class BrokerUnavailable(ConnectionError):
    """Kafka could not be reached at start."""

    def __init__(self, bootstrap: str, cause: BaseException | None = None) -> None:
        super().__init__(
            f"cannot reach Kafka at {bootstrap}"
            + (f" ({type(cause).__name__}: {cause})" if cause else "")
            + ": start it (or run `genloom up`, which starts a local broker),"
            " or set GENLOOM_KAFKA_BOOTSTRAP to a reachable host:port"
        )
        self.bootstrap = bootstrap


class TopicMismatch(RuntimeError):
    """An existing topic has a different partition count than the catalogue says."""


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A TLS context that verifies the brokers (against `ssl_cafile`, else the system's CAs) and,
    with `ssl_certfile`, presents a client certificate.

    Built once per process for the same files (reading certificates and the system's CA store for
    every producer, consumer and admin client is slow); a process reads rotated files when restarted.
    """
    password = settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
    return _tls_context(str(settings.ssl_cafile) if settings.ssl_cafile else None,
                        str(settings.ssl_certfile) if settings.ssl_certfile else None,
                        str(settings.ssl_keyfile) if settings.ssl_keyfile else None, password)


@functools.lru_cache(maxsize=8)
def _tls_context(cafile: str | None, certfile: str | None, keyfile: str | None,
                 password: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile, password)
    return context


def security_args(settings: KafkaSettings | None = None) -> dict[str, Any]:
    """The connection arguments every aiokafka client gets: the one place TLS and SASL are applied.

    `settings` default to the process's `GENLOOM_KAFKA_*` environment (every process takes its
    bootstrap from there too), so each factory below is secured without its callers passing more.
    """
    settings = settings or KafkaSettings()
    args: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.uses_ssl:
        args["ssl_context"] = ssl_context(settings)
    if settings.uses_sasl:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        if not settings.sasl_username or password is None:
            raise ValueError(f"GENLOOM_KAFKA_SECURITY_PROTOCOL={settings.security_protocol} needs"
                             " GENLOOM_KAFKA_SASL_USERNAME and GENLOOM_KAFKA_SASL_PASSWORD")
        args.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=password)
    return args


class RingingProducer(AIOKafkaProducer):
    """A producer that rings the topic's doorbell (`infra.kafka.doorbell`) once a record is acknowledged,
    so idle consumers of it fetch at once. `ring=False` sends a record that no genloom consumer needs at
    once: it is fetched with the next record that rings (or after the consumers' `heard_poll_ms`)."""

    async def send(self, topic, *args, ring: bool = True, **kwargs):
        delivery = await super().send(topic, *args, **kwargs)
        if ring:
            ring_after(delivery, topic)
        return delivery


class KeyedPartitioner:
    """aiokafka's default partitioner (the Java client's murmur2 of the key, so a key lands where any Kafka
    client puts it) with each key's hash kept: a worker and the moderation gate send every token of a job
    under the job's id, and aiokafka's murmur2 is pure Python (8.1 us a send here, 0.3 us kept).
    At most `size` keys are kept; past that the store starts over. A send without a key goes where
    aiokafka's partitioner puts it (a random available partition)."""

    _keyless = DefaultPartitioner()

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._keyless(key, all_partitions, available)
        digest = self._hashes.get(key)
        if digest is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            digest = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[digest % len(all_partitions)]


def producer(
    bootstrap: str,
    *,
    client_id: str = "genloom",
    max_message_bytes: int = 8 * 1024 * 1024,
    linger_ms: int = 0,
) -> AIOKafkaProducer:
    harden()  # a broker restart must not wedge the producer (infra.kafka.compat)
    return RingingProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,  # unsupported by the bundled broker; consumers dedupe instead
        linger_ms=linger_ms,
        max_request_size=max_message_bytes,
        request_timeout_ms=15_000,
        partitioner=KeyedPartitioner(),
        **security_args(),
    )


#: how often an aiokafka consumer's fetch routine wakes when nothing else wakes it (its default 200 ms: five
#: turns of an idle process's event loop a second per consumer). A fetch's answer, records consumed, a
#: partition resumed or unassigned and a doorbell ring all wake it at once; the timeout only bounds how
#: soon it sees what changed otherwise (new partitions' metadata, a backoff that ended)
CONSUMER_TIMEOUT_MS = 1000


def consumer(
    bootstrap: str,
    *topics: str,
    group_id: str | None,
    client_id: str = "genloom",
    fetch_max_wait_ms: int = 10,
    session_timeout_ms: int = 6000,
    heartbeat_interval_ms: int = 1000,
    max_poll_records: int = 100,
    max_message_bytes: int = 8 * 1024 * 1024,
    auto_offset_reset: str = "earliest",
) -> AIOKafkaConsumer:
    harden()  # a broker restart must not wedge the consumer (infra.kafka.compat)
    patch_fetcher()  # idle, fetches back off and wake on a ring (infra.kafka.doorbell), when Redis is set
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        fetch_max_wait_ms=fetch_max_wait_ms,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=heartbeat_interval_ms,
        rebalance_timeout_ms=max(session_timeout_ms * 2, 5000),
        max_poll_records=max_poll_records,
        consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
        max_partition_fetch_bytes=max_message_bytes + 1024,
        fetch_max_bytes=max(max_message_bytes + 1024, 52_428_800),
        **security_args(),
    )


async def start_client(client, bootstrap: str, timeout: float = 15.0) -> None:
    """Start a producer, consumer or admin client, turning connection failures into one clear error."""
    harden()
    try:
        await asyncio.wait_for(client.start(), timeout)
    except (KafkaConnectionError, OSError, asyncio.TimeoutError) as exc:
        try:
            await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()
        except Exception:  # the client never fully started; nothing else to release
            pass
        raise BrokerUnavailable(bootstrap, exc) from None


async def ensure_topics(bootstrap: str, topics: Iterable[TopicSpec], timeout: float = 15.0, *,
                        recreate_mismatched: bool = False, replication: int = 1) -> list[str]:
    """Create missing topics with their final partition counts (and `replication` copies each); return
    the names created.

    An existing topic with another partition count raises TopicMismatch: the counts cannot be
    changed in place, and silently using another count would break key ordering assumptions.
    With `recreate_mismatched` (only for a broker that was just restarted empty, where such a topic
    was auto-created by a client that reconnected first and holds nothing that matters) it is
    deleted and created again with the catalogue's count.
    """
    topics = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                                **security_args())
    await start_client(admin, bootstrap, timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t.name, t.partitions, replication, topic_configs=t.configs or None) for t in missing],
                    validate_only=False
                )
            except TopicAlreadyExistsError:
                pass  # a concurrent starter won the race; checked below
        present = [t for t in topics if t.name in existing]
        if present:
            described = await admin.describe_topics([t.name for t in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            wrong = [spec for spec in present if counts.get(spec.name) not in (None, spec.partitions)]
            if wrong and recreate_mismatched:
                await admin.delete_topics([t.name for t in wrong])
                await admin.create_topics(
                    [NewTopic(t.name, t.partitions, replication, topic_configs=t.configs or None) for t in wrong],
                    validate_only=False)
                missing += wrong
            elif wrong:
                spec = wrong[0]
                raise TopicMismatch(
                    f"topic {spec.name} has {counts[spec.name]} partitions, the catalogue says"
                    f" {spec.partitions}: recreate it or set GENLOOM_TOPICS_* to match"
                )
        return [t.name for t in missing]
    finally:
        await admin.close()


__all__ = [
    "BrokerUnavailable",
    "KafkaError",
    "TopicMismatch",
    "consumer",
    "ensure_topics",
    "producer",
    "security_args",
    "ssl_context",
    "start_client",
]
