"""The stack the API fuzz runs against, in a thread of its own (the fuzz client is blocking): the
gateway on a loopback port over the real broker and redis-server, a stand-in worker that answers
text, speech and image jobs of the fuzz tenants (video jobs stay queued, so in-flight limits fill
and 429s are reachable), and a webhook receiver, so no generated webhook URL is ever called."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading

from pydantic import ValidationError

from gateway.app import create_app
from gateway.auth import ApiKeys
from gateway.inprocess import InProcessServer
from infra.blob import LocalBlobStore
from infra.blob.base import BlobError, artifact_key
from infra.kafka import clients
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import EVENTS, jobs_topic
from infra.models.catalog import MediaCatalog, TextModelCatalog
from infra.redis.client import connect
from infra.settings.gateway import GatewaySettings
from schemas import AnyRequest, ImageRequest, SpeechRequest, TextRequest
from schemas.enums import ErrorCode, EventSource, Modality
from schemas.events import Artifact, AudioChunk, Completed, Failed, ModelInfo, Started, TokenDelta, Usage
from schemas.requests import parse_request

log = logging.getLogger(__name__)

#: jobs a fuzz tenant may hold per modality (low, so the fuzz meets 429s)
FUZZ_MAX_INFLIGHT = 4
#: the largest body the fuzz gateway reads
FUZZ_MAX_BODY = 256 * 1024
#: 1x1 transparent PNG, the stand-in worker's every image
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
_RATE = 16_000
_PCM = b"\x00\x00" * (_RATE // 10)  # 0.1 s of silence
_MODEL = ModelInfo(id="fuzz-stand-in", device="cpu", dtype="float32", random_weights=True)


class FuzzStack:
    """Start with `start()` (blocks until the gateway answers), stop with `stop()`."""

    def __init__(self, kafka_bootstrap: str, redis_url: str, blob_dir, keys: dict[str, str]) -> None:
        self._bootstrap = kafka_bootstrap
        self._redis_url = redis_url
        self._blob_dir = blob_dir
        self._keys = keys  # tenant -> API key
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-stack", daemon=True)
        self.url = ""
        self.webhook_url = ""
        self.answered = 0

    def start(self, timeout: float = 120.0) -> FuzzStack:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the fuzz stack did not start")
        if self._error is not None:
            raise RuntimeError("the fuzz stack failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() or logged at stop
            self._error = exc
            self._ready.set()
            log.exception("fuzz stack stopped with an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        redis = connect(self._redis_url)
        producer = clients.producer(self._bootstrap)
        await clients.start_client(producer, self._bootstrap)
        blobs = LocalBlobStore(self._blob_dir)
        await blobs.start()
        text_models = TextModelCatalog.from_settings()
        await text_models.load()
        settings = GatewaySettings(max_inflight=FUZZ_MAX_INFLIGHT, sse_keepalive_s=0.5, max_body_bytes=FUZZ_MAX_BODY,
                                   publish_timeout_s=5, route="direct")
        app = create_app(settings, redis=redis, producer=producer,
                         api_keys=ApiKeys((key, tenant) for tenant, key in self._keys.items()), blobs=blobs,
                         text_models=text_models, media=MediaCatalog.from_settings())
        server = await InProcessServer(app).start()
        sink = await asyncio.start_server(_webhook_sink, "127.0.0.1", 0)
        self.webhook_url = f"http://127.0.0.1:{sink.sockets[0].getsockname()[1]}/hook"
        worker = asyncio.create_task(self._stand_in_worker(producer, blobs))
        self.url = server.url
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            sink.close()
            await server.stop()
            await producer.stop()
            await redis.aclose()

    async def _stand_in_worker(self, producer, blobs: LocalBlobStore) -> None:
        """Answer every text, speech and image job of a fuzz tenant as a worker would, at once."""
        emitter = EventEmitter(producer, EVENTS, EventSource.WORKER)
        topics = [jobs_topic(m) for m in (Modality.TEXT, Modality.SPEECH, Modality.IMAGE)]
        consumer = clients.consumer(self._bootstrap, *topics, group_id=None, auto_offset_reset="earliest")
        await clients.start_client(consumer, self._bootstrap)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        try:
                            request = parse_request(message.value)
                        except ValidationError:
                            continue
                        if request.tenant in self._keys:
                            await self._answer(emitter, blobs, request)
                            self.answered += 1
        finally:
            await consumer.stop()

    async def _answer(self, emitter: EventEmitter, blobs: LocalBlobStore, request: AnyRequest) -> None:
        job = request.job_id
        await emitter.emit(Started, job, worker="fuzz-stand-in", model=_MODEL)
        try:
            match request:
                case TextRequest():
                    await emitter.emit(TokenDelta, job, text="ok", tokens=1)
                    await emitter.emit(Completed, job, text="ok",
                                       usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2))
                case SpeechRequest():
                    fmt = request.params.format.value
                    ref = await blobs.put(artifact_key(request.tenant, job, f"speech.{fmt}"), _PCM, f"audio/{fmt}")
                    await emitter.emit(AudioChunk, job, index=0, data=base64.b64encode(_PCM).decode(),
                                       sample_rate=_RATE, duration_s=0.1)
                    await emitter.emit(Artifact, job, uri=ref.uri, mime_type=ref.mime, bytes=ref.bytes,
                                       sha256=ref.sha256, duration_s=0.1)
                    await emitter.emit(Completed, job, usage=Usage(audio_seconds=0.1))
                case ImageRequest():
                    for i in range(request.params.n):
                        ref = await blobs.put(artifact_key(request.tenant, job, f"image-{i}.png"), PNG, "image/png")
                        await emitter.emit(Artifact, job, index=i, uri=ref.uri, mime_type=ref.mime, bytes=ref.bytes,
                                           sha256=ref.sha256, width=1, height=1)
                    await emitter.emit(Completed, job, usage=Usage(images=request.params.n))
        except BlobError as exc:  # what a real worker would do with a key it cannot store under
            await emitter.emit(Failed, job, code=ErrorCode.GENERATION_ERROR, message=str(exc))


async def _webhook_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
    writer.close()
