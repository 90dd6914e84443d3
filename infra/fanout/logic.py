"""Pure fan-out decisions: how a message on the events topic is read (what an event does to the job
record is infra.redis.jobrecord's), and which Redis errors are worth waiting out."""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infra.kafka.codec import decode_event
from infra.kafka.dlq import decode_or_dead_letter, describe_event_error
from schemas.dlq import DeadLetter
from schemas.events import JobEvent


@dataclass(frozen=True)
class Malformed:
    """A message on the events topic that is not a valid event: it goes to the DLQ."""

    letter: DeadLetter


def read_event(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, consumer: str
) -> JobEvent | Malformed:
    """Decode one message from `genloom.events`. Never raises for bad input."""
    event = decode_or_dead_letter(decode_event, expected="JobEvent", describe=describe_event_error, topic=topic,
                                  partition=partition, offset=offset, key=key, value=value, consumer=consumer)
    return Malformed(event) if isinstance(event, DeadLetter) else event


#: errors that say Redis cannot take the write *now* (down, out of memory, a replica during a
#: failover, loading, busy with a script, scripts flushed by a restart): the batch is retried
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, OutOfMemoryError, ReadOnlyError, BusyLoadingError,
              MasterDownError, TryAgainError, ClusterDownError, NoScriptError)
#: the same, for replies redis-py has no class for ("BUSY Redis is busy running a script")
_TRANSIENT_PREFIXES = ("BUSY", "OOM", "READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOSCRIPT")


def transient(exc: BaseException) -> bool:
    """Redis refused for a reason that passes (retry); anything else is about the message (dead letter)."""
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_PREFIXES)
