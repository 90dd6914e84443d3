"""The gateway app: `create_app` takes started clients; `serve_app` builds them from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from infra.blob import BlobStore
from infra.blob.config import BlobSettings, blob_store
from infra.kafka.clients import producer as kafka_producer
from infra.kafka.clients import start_client
from infra.models.catalog import MediaCatalog, TextModelCatalog
from infra.redis.client import check, connect
from infra.redis.jobstore import JobStore
from infra.redis.replay import BLOCK_MS as REPLAY_BLOCK_MS
from infra.redis.replay import ReplayReader
from infra.settings import KafkaSettings, RedisSettings, SigningSettings
from infra.settings.gateway import ApiKeySettings, GatewaySettings
from infra.settings.moderation import ModerationSettings
from infra.redis.redactions import RedactionVault
from infra.settings.streams import PrepareSettings, PrivacySettings, WebhookSettings

from . import artifacts, audit, errors, health, jobs, memory, ui, webhooks
from .openai import audio as openai_audio
from .openai import chat as openai_chat
from .openai import embeddings as openai_embeddings
from .openai import images as openai_images
from .openai import moderations as openai_moderations
from .openai import videos as openai_videos
from .auth import ApiKeys
from .lifecycle import JobService
from .limits import StreamSlots
from .offload import Offload
from infra.tracing import setup_tracing

from .metrics import HttpMetrics, LagReader
from .metrics import router as metrics_router
from .redact import QueryKeyMiddleware
from .tokens import BrowserTokens
from .restore import Restoration


def create_app(
    settings: GatewaySettings,
    *,
    redis: aioredis.Redis | None,
    producer,
    api_keys: ApiKeys | None = None,
    blobs: BlobStore | None = None,
    text_models: TextModelCatalog | None = None,
    media: MediaCatalog | None = None,
    webhook_settings: WebhookSettings | None = None,
    lifespan=None,
    signing_key: bytes | None = None,
    privacy: PrivacySettings | None = None,
    prepare: PrepareSettings | None = None,
    moderation: ModerationSettings | None = None,
) -> FastAPI:
    """The app over clients the caller owns (started, and stopped by the caller)."""
    app = FastAPI(title="genloom gateway", version="0.1.0", lifespan=lifespan)
    app.state.privacy = privacy or PrivacySettings()
    app.state.prepare = prepare or PrepareSettings()
    app.state.restoration = Restoration(None, app.state.privacy)
    if redis is not None:
        _attach(app, settings, redis, producer, signing_key)
    app.state.settings = settings
    app.state.offload = Offload(settings.validate_threads, settings.validate_per_tenant)
    app.state.sse_slots = StreamSlots("SSE", settings.max_sse_per_tenant, settings.retry_after_s)
    app.state.browser_tokens = BrowserTokens(
        settings.browser_token_secret.get_secret_value().encode() if settings.browser_token_secret else None,
        settings.browser_token_ttl_s)
    app.state.ws_slots = StreamSlots("WebSocket", settings.max_ws_per_tenant, settings.retry_after_s)
    if api_keys is None:
        access = ApiKeySettings()
        api_keys = ApiKeys.from_settings(access.api_keys, access.api_keys_file)
    app.state.api_keys = api_keys
    app.state.blobs = blobs if blobs is not None else blob_store(BlobSettings())
    app.state.text_models = text_models if text_models is not None else TextModelCatalog([])
    app.state.media = media if media is not None else MediaCatalog.from_settings()
    app.state.webhooks = webhooks.WebhookGate(webhook_settings or WebhookSettings())
    app.state.moderators = openai_moderations.Moderators(moderation or ModerationSettings())
    app.state.embeddings = openai_embeddings.EmbeddingService()
    errors.install(app)
    app.add_middleware(QueryKeyMiddleware)
    app.add_middleware(HttpMetrics)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.include_router(webhooks.router)
    app.include_router(memory.router)
    app.include_router(openai_chat.router)
    app.include_router(openai_images.router)
    app.include_router(openai_videos.router)
    app.include_router(openai_audio.router)
    app.include_router(openai_moderations.router)
    app.include_router(openai_embeddings.router)
    app.include_router(audit.router)
    app.include_router(ui.router)
    app.openapi = lambda: _openapi(app)
    return app


def _attach(app: FastAPI, settings: GatewaySettings, redis: aioredis.Redis, producer,
            signing_key: bytes | None = None) -> None:
    app.state.redis = redis
    app.state.producer = producer
    privacy, prepare = app.state.privacy, app.state.prepare
    key = privacy.key_bytes()
    app.state.restoration = Restoration(RedactionVault(redis, key) if key else None, privacy)
    # one shared reader follows every job this process streams (one connection, not one per stream)
    block_ms = int(min(REPLAY_BLOCK_MS, settings.redis_socket_timeout_s * 500))  # well within the socket timeout
    app.state.replay = ReplayReader(redis, block_ms=block_ms) if settings.replay_reader == "shared" else None
    store = JobStore(redis, job_ttl_s=settings.job_ttl_s, replay=app.state.replay)
    app.state.jobs = JobService(
        store, producer, max_inflight=settings.max_inflight, retry_after_s=settings.retry_after_s,
        publish_timeout_s=settings.publish_timeout_s,
        route_direct=(lambda tenant: True) if settings.route == "direct" else prepare.all_off,
        signing_key=signing_key,
    )
    app.state.memory = memory.memory_access(redis)


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        request = jobs.request_schema()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(request.pop("$defs", {}))
        components["GenerationRequest"] = request
        app.openapi_schema = schema
    return app.openapi_schema


def serve_app() -> FastAPI:
    """For uvicorn (`factory=True`): settings from the environment, clients opened in the lifespan."""
    setup_tracing("genloom-gateway")
    settings = GatewaySettings()
    kafka = KafkaSettings()
    redis_url = RedisSettings().url
    signing_key = SigningSettings().key
    if not kafka.bootstrap or not redis_url:
        raise SystemExit(
            "the gateway needs GENLOOM_KAFKA_BOOTSTRAP and GENLOOM_REDIS_URL: run `genloom up`, or set them"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(redis_url, max_connections=settings.redis_max_connections,
                        socket_timeout_s=settings.redis_socket_timeout_s,
                        connect_timeout_s=settings.redis_connect_timeout_s)
        await check(redis, redis_url)
        producer = kafka_producer(kafka.bootstrap, client_id=f"{kafka.client_id}-gateway",
                                  max_message_bytes=kafka.max_message_bytes)
        await start_client(producer, kafka.bootstrap)
        app.state.lag = LagReader(kafka.bootstrap)
        _attach(app, settings, redis, producer, signing_key)
        await app.state.blobs.start()
        await app.state.text_models.load()
        try:
            yield
        finally:
            if app.state.replay is not None:
                await app.state.replay.aclose()
            app.state.offload.close()
            app.state.embeddings.close()
            await app.state.blobs.stop()
            await producer.stop()
            await redis.aclose()

    return create_app(settings, redis=None, producer=None, text_models=TextModelCatalog.from_settings(),
                      lifespan=lifespan)
