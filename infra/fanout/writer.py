"""`ReplayWriter`: the fan-out's write for a process that publishes events on `genloom.events` itself."""

from __future__ import annotations

from infra.kafka.topics import APPLIED_HEADER
from infra.redis.audit import ModerationAudit
from infra.redis.client import connect
from infra.redis.jobstore import event_store
from infra.settings.streams import FanoutSettings, WebhookSettings
from schemas.events import JobEvent

from .handler import FanoutHandler, RawMessage
from .logic import Malformed

#: the header (name, value) on a record in `genloom.events` whose event its producer wrote itself
APPLIED = (APPLIED_HEADER, b"1")


def handler_over(redis, consumer: str, settings: FanoutSettings, webhooks: WebhookSettings) -> FanoutHandler:
    """The fan-out's handler over a Redis client: the tap's, and a `ReplayWriter`'s."""
    return FanoutHandler(event_store(redis, settings, webhooks), consumer=consumer, audit=ModerationAudit(redis),
                         chunk=settings.apply_chunk)


class ReplayWriter:
    """The fan-out's write for a process that publishes events on `genloom.events` itself (the moderation
    gate): `write` applies them to their jobs' replay logs as the fan-out would, while the broker
    acknowledges them, and the records carry `APPLIED` (`HEADER`), so the fan-out passes them by. A client
    then reads each released token a Kafka hop sooner (the fan-out's consume), and a produce round trip
    sooner than if the write waited for the acknowledgement; the event is decoded once.

    Nothing is lost if the writer's process dies before both are done: it settles (commits) its input only
    after `write` returned and the broker acknowledged, so its successor releases the same events again,
    with the same (source, attempt, seq), publishes and writes them, and the log drops what it already has.
    A client may so read an event before the broker holds it; it holds it once the successor ran. A Redis
    that refuses holds the writer, as it holds the fan-out (`FanoutHandler._apply`)."""

    #: the header its records carry
    HEADER = APPLIED

    def __init__(self, redis_url: str, consumer: str, settings: FanoutSettings | None = None,
                 webhooks: WebhookSettings | None = None) -> None:
        self._redis = connect(redis_url)
        self._handler = handler_over(self._redis, consumer, settings or FanoutSettings(), webhooks or WebhookSettings())

    async def write(self, released: list[tuple[RawMessage, JobEvent]]) -> list[tuple[int, Malformed]]:
        """Apply `released`, in order: each event with the record it goes out as. The dead letters of those
        Redis would not take (a key of the wrong type), each with its index in `released`, for the caller
        to publish (with the record's position, when it did not have it yet)."""
        return [(i, o) for i, o in enumerate(await self._handler.handle_events(released)) if isinstance(o, Malformed)]

    async def aclose(self) -> None:
        await self._redis.aclose()
