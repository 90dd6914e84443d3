"""The fan-out agent: thin; what it does is in handler.py and logic.py, and in Redis infra.redis.jobstore.
Beside it runs the webhook deliverer (outbox.py, webhooks.py) when webhooks are enabled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import faust

from infra.kafka.codec import encode
from infra.kafka.topics import DLQ
from infra.redis.audit import ModerationAudit
from infra.redis.client import connect
from infra.redis.jobstore import event_store
from infra.redis.outbox import WebhookOutbox
from infra.settings.streams import FanoutSettings, WebhookSettings

from ..app import RAW, Topics
from ..batches import natural_batches
from .handler import FanoutHandler, RawMessage
from .logic import Malformed
from .outbox import OutboxDeliverer
from .webhooks import WebhookDispatcher, WebhookSender, new_http_client

log = logging.getLogger(__name__)


def register(
    app: faust.App,
    topics: Topics,
    redis_url: str | None,
    settings: FanoutSettings | None = None,
    webhooks: WebhookSettings | None = None,
) -> None:
    """Add the fan-out agent on `genloom.events`; without a Redis URL there is nothing to fan out to."""
    if not redis_url:
        log.warning("GENLOOM_REDIS_URL is not set: the fan-out agent is not started (no replay logs, no job status)")
        return
    settings = settings or FanoutSettings()
    webhooks = webhooks or WebhookSettings()
    dlq = app.topic(DLQ, internal=False, **RAW)

    @app.agent(topics.events, name="genloom.fanout")
    async def fan_out(stream):
        redis = connect(redis_url)
        store = event_store(redis, settings, webhooks)
        handler = FanoutHandler(store, consumer=app.conf.id, audit=ModerationAudit(redis))
        deliverer = start_deliverer(redis_url, webhooks, consumer=f"{socket.gethostname()}:{os.getpid()}")
        try:
            # hot loop: one pipelined Redis round trip per batch of events
            async for events in natural_batches(stream, settings.batch_max):
                batch = [RawMessage(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()))
                         for m in (e.message for e in events)]
                for message, outcome in zip(batch, await handler.handle_batch(batch)):
                    if isinstance(outcome, Malformed):
                        await dlq.send(key=message.key, value=encode(outcome.letter))
        finally:
            if deliverer is not None:
                await deliverer.aclose()
            await redis.aclose()


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
