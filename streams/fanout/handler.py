"""Messages in, their effect on Redis out (webhooks owed go to the outbox in the same script call).
The agent around it is a loop."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infra.kafka.dlq import dead_letter_for
from infra.redis.jobstore import Appended, Dropped, JobStore
from schemas.enums import ErrorCode
from schemas.events import JobEvent

from .logic import Malformed, read_event

log = logging.getLogger(__name__)

#: waits between Redis retries while it is unreachable (events are delayed, never dropped)
_REDIS_RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

Outcome = Appended | Dropped | Malformed


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FanoutHandler:
    def __init__(self, store: JobStore, consumer: str) -> None:
        self._store = store
        self._consumer = consumer

    async def handle_batch(self, messages: list[RawMessage]) -> list[Outcome]:
        """Outcomes in message order; malformed messages (and failed script calls) come back as
        dead letters for the agent to publish."""
        outcomes: list[Outcome | None] = [None] * len(messages)
        valid: list[tuple[int, JobEvent, bytes]] = []
        for i, m in enumerate(messages):  # hot loop: decode each message once
            item = read_event(
                topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                consumer=self._consumer,
            )
            if isinstance(item, Malformed):
                outcomes[i] = item
            else:
                valid.append((i, item, m.value or b""))
        if valid:
            results = await self._apply([(event, payload) for _, event, payload in valid])
            for (i, event, payload), result in zip(valid, results):
                if isinstance(result, Exception):
                    outcomes[i] = self._failed(messages[i], result)
                    continue
                outcomes[i] = result
        return outcomes  # type: ignore[return-value]

    async def _apply(self, items) -> list[Appended | Dropped | Exception]:
        attempt = 0
        while True:
            try:
                return await self._store.apply_batch(items, time.time())
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # safe to repeat: events already applied come back as duplicates
                wait = _REDIS_RETRY_S[min(attempt, len(_REDIS_RETRY_S) - 1)]
                attempt += 1
                log.warning("fan-out cannot reach Redis (%s); retrying in %.1fs", exc, wait)
                await asyncio.sleep(wait)

    def _failed(self, m: RawMessage, exc: Exception) -> Malformed:
        log.error("fan-out script failed for %s[%d]@%d: %s", m.topic, m.partition, m.offset, exc)
        return Malformed(
            dead_letter_for(
                topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                consumer=self._consumer, code=ErrorCode.INTERNAL_ERROR, error=f"fan-out script failed: {exc}",
            )
        )
