"""Edge fixtures: the gateway in-process on real Kafka and Redis, the streams process (routing +
fan-out), API keys per test tenant, and a test-side "worker" that emits events."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gateway.app import create_app
from gateway.auth import ApiKeys, generate_key
from gateway.inprocess import InProcessServer
from infra.blob import LocalBlobStore
from infra.client import GenloomClient
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import EVENTS
from infra.models.catalog import TextModelCatalog
from infra.redis.client import connect
from infra.redis.jobstore import JobStore
from infra.settings.gateway import GatewaySettings
from schemas.enums import EventSource
from schemas.requests import scoped_job_id
from tests.conftest import REQUEST_SIGNING_KEY
from tests.edge_helpers import text_job
from tests.kafka_helpers import started_producer

#: read by the streams process the shared `streams_process` fixture starts (fan-out webhooks) and the gateway
WEBHOOK_SECRET = "edge-test-webhook-secret"
os.environ.setdefault("GENLOOM_WEBHOOK_SECRET", WEBHOOK_SECRET)
os.environ.setdefault("GENLOOM_WEBHOOK_BACKOFF_S", "0.2")
os.environ.setdefault("GENLOOM_WEBHOOK_PROGRESS_INTERVAL_S", "1")
#: the test receivers listen on 127.0.0.1; every other internal address stays refused
os.environ.setdefault("GENLOOM_WEBHOOK_ALLOW_NETWORKS", "127.0.0.1/32")

#: every tenant an edge test uses, each with its own key (and so its own in-flight sets)
EDGE_TENANTS = ("t-cli", "t-flow", "t-resume", "t-idem", "t-load", "t-a", "t-b", "t-cancel", "t-ws", "t-dedupe",
                "t-hook", "t-expire", "t-bad", "t-warm", "t-media", "t-media-b", "t-scope-a", "t-scope-b", "t-cache",
                "t-mem-a", "t-mem-b", "t-mod", "t-ui")
#: the in-flight bound of the test gateways (low, so 429 is reachable)
EDGE_MAX_INFLIGHT = 3


@pytest.fixture(scope="session")
def edge_keys() -> dict[str, str]:
    return {tenant: generate_key() for tenant in EDGE_TENANTS}


@pytest.fixture(scope="session")
async def edge_redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def edge_store(edge_redis) -> JobStore:
    """The job store over the edge's Redis, to read what the gateway and the fan-out wrote."""
    return JobStore(edge_redis)


@pytest.fixture(scope="session")
async def edge_producer(kafka_bootstrap):
    producer = await started_producer(kafka_bootstrap)
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
def worker(edge_producer) -> EventEmitter:
    """The test plays the worker: a real producer emitting on genloom.events."""
    return EventEmitter(edge_producer, EVENTS, EventSource.WORKER)


def _settings(route: str = "direct") -> GatewaySettings:
    return GatewaySettings(
        max_inflight=EDGE_MAX_INFLIGHT, sse_keepalive_s=0.5, max_body_bytes=256 * 1024,
        publish_timeout_s=5, route=route,
    )


@pytest.fixture(scope="session")
async def text_models():
    """The served text model catalog (the SmolLM2 tokenizer, for prompt-length checks)."""
    catalog = TextModelCatalog.from_settings()
    await catalog.load()
    return catalog


async def _gateway(edge_redis, edge_producer, edge_keys, blob_dir, text_models, route: str = "direct"):
    store = LocalBlobStore(blob_dir)
    await store.start()
    app = create_app(_settings(route), redis=edge_redis, producer=edge_producer,
                     api_keys=ApiKeys((key, tenant) for tenant, key in edge_keys.items()), blobs=store,
                     text_models=text_models, signing_key=REQUEST_SIGNING_KEY)
    return await InProcessServer(app).start()


@pytest.fixture(scope="session")
async def gateway_url(edge_redis, edge_producer, edge_keys, blob_dir, streams_process, text_models):
    server = await _gateway(edge_redis, edge_producer, edge_keys, blob_dir, text_models)
    await _wait_for_fanout(server.url, edge_keys["t-warm"], edge_redis)
    yield server.url
    await server.stop()


@pytest.fixture(scope="session")
async def gateway_url_b(edge_redis, edge_producer, edge_keys, blob_dir, gateway_url, text_models):
    """A second gateway instance over the same Redis and Kafka; it routes through the stream
    processors (`route="streams"`), the first one straight to the workers' topics."""
    server = await _gateway(edge_redis, edge_producer, edge_keys, blob_dir, text_models, route="streams")
    yield server.url
    await server.stop()


async def _wait_for_fanout(url: str, key: str, redis, timeout: float = 90.0) -> None:
    """Submit a job and wait until the fan-out recorded its `accepted` (the streams process is up)."""
    async with GenloomClient(url, key) as client:
        job = await client.submit(text_job("warm-up"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = await JobStore(redis).load(scoped_job_id("t-warm", job["id"]))
        if record is not None and record.last_event_id:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the fan-out did not record an event within 90 s: see the streams log")


@pytest.fixture
async def client_for(gateway_url, edge_keys):
    """`client_for(tenant)`: a GenloomClient with that tenant's key (closed after the test)."""
    opened: list[GenloomClient] = []

    def make(tenant: str, url: str | None = None, **kwargs) -> GenloomClient:
        client = GenloomClient(url or gateway_url, edge_keys[tenant], **kwargs)
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


#: the text model the OpenAI-surface tests serve
OPENAI_TEXT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
async def text_pipeline(kafka_bootstrap, gateway_url, edge_keys):
    """A text worker (real SmolLM2, the engine in its own process as `python -m workers text` runs it)
    beside the edge fixtures' gateway, streams process and moderation gate; one per test module."""
    from infra.kafka.topics import jobs_topic
    from infra.models.loader import TextModelSpec
    from tests.conftest import FAST_GROUP
    from tests.kafka_helpers import serving, skip_backlog
    from workers.text.handler import TextHandler
    from workers.wiring import job_runner

    await skip_backlog(kafka_bootstrap, jobs_topic("text"), "genloom-workers-text")
    handler = TextHandler(TextModelSpec(), served_name=OPENAI_TEXT_MODEL, max_batch_size=8, engine_process=True,
                          torch_threads=1)
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)):
        yield handler


@pytest.fixture
def sdk(gateway_url, edge_keys):
    """The official OpenAI SDK on the first gateway, as tenant t-flow (a module may define its own)."""
    import openai

    return openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=edge_keys["t-flow"], max_retries=0, timeout=120)
