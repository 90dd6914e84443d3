"""The reconciler as a faust task of the streams process: thin; what it does is in loop.py and logic.py."""

from __future__ import annotations

import os
import socket

import faust

from infra.blob.config import BlobSettings, blob_store
from infra.kafka.codec import encode
from infra.redis.client import connect
from infra.redis.jobstore import event_store
from infra.settings.streams import FanoutSettings, ReconcilerSettings, WebhookSettings
from schemas.control import CancelJob

from ..app import Topics
from .loop import Reconciler


def register(app: faust.App, topics: Topics, redis_url: str | None, settings: ReconcilerSettings | None = None,
             fanout: FanoutSettings | None = None, webhooks: WebhookSettings | None = None) -> None:
    """Run the reconciler beside the fan-out; every streams process runs one, one at a time acts."""
    settings = settings or ReconcilerSettings()
    if not redis_url or not settings.enabled:
        return
    fanout = fanout or FanoutSettings()
    webhooks = webhooks or WebhookSettings()

    blob_settings = BlobSettings()

    async def stop_work(job_id: str, tenant: str, reason: str) -> None:
        cancel = CancelJob(job_id=job_id, tenant=tenant, reason=reason)
        await topics.control.send(key=job_id.encode(), value=encode(cancel))

    @app.task
    async def reconcile() -> None:
        redis = connect(redis_url)
        store = event_store(redis, fanout, webhooks)  # a lost job's webhook is owed like any terminal event's
        blobs = blob_store(blob_settings) if blob_settings.ttl_s else None
        if blobs is not None:
            await blobs.start()
        try:
            await Reconciler(store, settings, holder=f"{socket.gethostname()}:{os.getpid()}", blobs=blobs,
                             blob_ttl_s=blob_settings.ttl_s, stop_work=stop_work).run()
        finally:
            if blobs is not None:
                await blobs.stop()
            await redis.aclose()
