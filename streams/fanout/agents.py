"""The fan-out agent: thin; what it does is in handler.py and logic.py, and in Redis infra.redis.jobstore."""

from __future__ import annotations

import logging

import faust
import httpx

from infra.kafka.codec import encode
from infra.kafka.topics import DLQ
from infra.redis.client import connect
from infra.redis.jobstore import JobStore
from infra.settings.streams import FanoutSettings, WebhookSettings

from ..app import RAW, Topics
from ..batches import natural_batches
from .handler import FanoutHandler, RawMessage
from .logic import Malformed
from .webhooks import WebhookDispatcher

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
        http = httpx.AsyncClient(timeout=webhooks.timeout_s)
        hooks = (
            WebhookDispatcher(
                redis, http,
                secret=webhooks.secret.get_secret_value().encode(),
                max_attempts=webhooks.max_attempts,
                backoff_s=webhooks.backoff_s,
                backoff_max_s=webhooks.backoff_max_s,
                progress_interval_s=webhooks.progress_interval_s,
                max_pending=webhooks.max_pending,
                concurrency=webhooks.concurrency,
                mark_ttl_s=webhooks.mark_ttl_s,
            )
            if webhooks.secret
            else None
        )
        store = JobStore(redis, replay_maxlen=settings.replay_maxlen, job_ttl_s=settings.job_ttl_s)
        handler = FanoutHandler(store, hooks, consumer=app.conf.id)
        try:
            # hot loop: one pipelined Redis round trip per batch of events
            async for events in natural_batches(stream, settings.batch_max):
                batch = [RawMessage(m.topic, m.partition, m.offset, m.key, m.value) for m in (e.message for e in events)]
                for message, outcome in zip(batch, await handler.handle_batch(batch)):
                    if isinstance(outcome, Malformed):
                        await dlq.send(key=message.key, value=encode(outcome.letter))
        finally:
            if hooks is not None:
                await hooks.close()
            await http.aclose()
            await redis.aclose()
