"""The fan-out tap: thin; what it does is in infra/fanout (handler.py and logic.py, shared with the moderation
gate's own write, writer.py), and in Redis infra.redis.jobstore.
Beside it runs the webhook deliverer (outbox.py, webhooks.py) when webhooks are enabled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from infra.kafka import clients
from infra.kafka.consume import Record
from infra.kafka.dlq import send_dead_letter
from infra.fanout.handler import FanoutHandler, RawMessage
from infra.fanout.logic import Malformed
from infra.fanout.writer import APPLIED, handler_over
from infra.kafka.topics import EVENTS
from infra.redis.client import connect
from infra.redis.outbox import WebhookOutbox
from infra.settings.streams import FanoutSettings, WebhookSettings

from ..tap import TapHandler, TapSpec
from .outbox import OutboxDeliverer
from .webhooks import WebhookDispatcher, WebhookSender, new_http_client

log = logging.getLogger(__name__)

class FanoutTap(TapHandler):
    """Each batch of `genloom.events` into Redis with one pipelined round trip; poison to the DLQ."""

    def __init__(self, group: str, bootstrap: str, redis_url: str, settings: FanoutSettings,
                 webhooks: WebhookSettings) -> None:
        self._group = group
        self._redis_url = redis_url
        self._settings = settings
        self._webhooks = webhooks
        self.dead_letters = clients.producer(bootstrap, client_id=group)
        self._redis = None
        self._handler: FanoutHandler | None = None
        self._deliverer: RunningDeliverer | None = None

    async def open(self) -> None:
        await self.dead_letters.start()
        self._redis = connect(self._redis_url)
        self._handler = handler_over(self._redis, self._group, self._settings, self._webhooks)
        self._deliverer = start_deliverer(self._redis_url, self._webhooks,
                                          consumer=f"{socket.gethostname()}:{os.getpid()}")

    async def handle(self, records: list[Record[bytes]]) -> None:
        # hot loop: one pipelined Redis round trip for what a poll brought
        batch = [RawMessage(r.tp.topic, r.tp.partition, r.offset, r.key, r.value, r.headers) for r in records
                 if APPLIED not in r.headers]  # the gate wrote these itself (infra.fanout.writer.ReplayWriter)
        for outcome in await self._handler.handle_batch(batch):
            if isinstance(outcome, Malformed):
                await send_dead_letter(self.dead_letters, outcome.letter)

    async def close(self) -> None:
        if self._deliverer is not None:
            await self._deliverer.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        await self.dead_letters.stop()


def spec(bootstrap: str, redis_url: str | None, settings: FanoutSettings | None = None,
         webhooks: WebhookSettings | None = None) -> TapSpec | None:
    """The fan-out on `genloom.events`; without a Redis URL there is nothing to fan out to (None)."""
    if not redis_url:
        log.warning("GENLOOM_REDIS_URL is not set: the fan-out is not started (no replay logs, no job status)")
        return None
    settings = settings or FanoutSettings()
    webhooks = webhooks or WebhookSettings()
    return TapSpec("fanout", [EVENTS], lambda group: FanoutTap(group, bootstrap, redis_url, settings, webhooks),
                   batch_max=settings.batch_max)


class RunningDeliverer:
    """The deliverer's task and what it owns, for the agent to stop."""

    def __init__(self, task: asyncio.Task, dispatcher: WebhookDispatcher, closers) -> None:
        self._task = task
        self._dispatcher = dispatcher
        self._closers = closers

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._dispatcher.close()
        for close in self._closers:
            await close()


def start_deliverer(redis_url: str, webhooks: WebhookSettings, *, consumer: str) -> RunningDeliverer | None:
    """The webhook deliverer as a background task over its own Redis client (its reads block);
    None when webhooks are disabled (no master secret)."""
    master = webhooks.master()
    if master is None:
        return None
    redis = connect(redis_url)
    http = new_http_client()
    outbox = WebhookOutbox(redis, mark_ttl_s=webhooks.mark_ttl_s)
    sender = WebhookSender(http, webhooks.policy(), deadline_s=webhooks.timeout_s,
                           max_response_bytes=webhooks.max_response_bytes)
    dispatcher = WebhookDispatcher(
        outbox, sender, master=master, max_attempts=webhooks.max_attempts, backoff_s=webhooks.backoff_s,
        backoff_max_s=webhooks.backoff_max_s, max_pending=webhooks.max_pending, concurrency=webhooks.concurrency,
        tenant_max_pending=webhooks.tenant_max_pending, tenant_concurrency=webhooks.tenant_concurrency,
    )
    deliverer = OutboxDeliverer(outbox, dispatcher, consumer=consumer, claim_idle_s=webhooks.claim_idle_s)
    task = asyncio.create_task(deliverer.run(), name="genloom.webhooks")
    return RunningDeliverer(task, dispatcher, [http.aclose, redis.aclose])
