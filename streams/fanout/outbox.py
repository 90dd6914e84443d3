"""The deliverer: reads the webhook outbox with a consumer group and hands entries to the
dispatcher; takes over entries a dead deliverer (or a full tenant) left pending."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from infra.redis.outbox import WebhookOutbox

from .webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

#: wait after a Redis error before reading again
_RETRY_S = 1.0


class OutboxDeliverer:
    def __init__(self, outbox: WebhookOutbox, dispatcher: WebhookDispatcher, *, consumer: str,
                 claim_idle_s: float, block_ms: int = 1000, batch: int = 64, beat_s: float = 1.0) -> None:
        self._outbox = outbox
        self._dispatcher = dispatcher
        self._consumer = consumer
        self._idle_ms = int(claim_idle_s * 1000)
        self._sweep_every = max(0.1, claim_idle_s / 2)
        self._block_ms = block_ms
        self._batch = batch
        self._beat_s = beat_s

    async def run(self) -> None:
        """Until cancelled. Redis errors are logged and waited out; nothing owed is acknowledged
        before it is delivered or given up."""
        next_sweep = 0.0
        next_beat = 0.0
        cursor = "0-0"
        ready = False
        while True:
            try:
                if not ready:
                    await self._outbox.ensure_group()
                    ready = True
                if time.monotonic() >= next_beat:  # alive and reading: the gateway's /readyz looks
                    await self._outbox.beat(self._consumer, time.time())
                    next_beat = time.monotonic() + self._beat_s
                room = self._dispatcher.room()
                if room == 0:
                    await self._dispatcher.wait_for_room()
                    continue
                if time.monotonic() >= next_sweep:
                    cursor, entries = await self._outbox.take_over(self._consumer, self._idle_ms,
                                                                   min(room, self._batch), cursor)
                    for entry in entries:
                        self._dispatcher.offer(entry)
                    next_sweep = time.monotonic() + self._sweep_every
                    room = self._dispatcher.room()
                    if room == 0:
                        continue
                block = max(1, min(self._block_ms, int((next_sweep - time.monotonic()) * 1000)))
                for entry in await self._outbox.read_new(self._consumer, min(room, self._batch), block):
                    self._dispatcher.offer(entry)
            except RedisError as exc:
                log.warning("webhook outbox unreachable (%s); retrying in %.0fs", exc, _RETRY_S)
                await asyncio.sleep(_RETRY_S)
            except Exception:  # a bug must not end deliveries for good: what is owed stays in the outbox
                log.exception("webhook deliverer failed; retrying in %.0fs", _RETRY_S)
                await asyncio.sleep(_RETRY_S)
