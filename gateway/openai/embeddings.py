"""`POST /v1/embeddings`, as OpenAI serves it, with the embedding model the preparation stages use.

The gateway embeds itself: an embedding is one forward pass with nothing to stream, so a Kafka
round trip would only add latency, and nothing is stored (the texts and vectors live only for the
request). The model is loaded on the first request. Concurrent requests are coalesced into one
forward pass on one thread of the gateway's own (the event loop never runs the model); each tenant
has at most `per_tenant` requests waiting or running, and a request at most `max_inputs` texts.
A text longer than the model reads is refused (`context_length_exceeded`), never silently cut.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from fastapi import APIRouter, Depends, Request

from infra.models.embedder import DEFAULT_EMBEDDING_MODEL, Embedder, EmbedderLoadError, OnnxEmbedder, embedder_for
from infra.settings.streams import EmbeddingSettings
from schemas.enums import ErrorCode
from schemas.openai import Embedding, EmbeddingRequest, EmbeddingsResponse, EmbeddingUsage

from ..auth import tenant_of
from ..body import parse_body, read_json
from ..errors import ApiError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai"])

#: OpenAI's own limit on texts in one request
MAX_INPUTS = 2048


@dataclass
class _Pending:
    texts: list[str]
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class EmbeddingService:
    """The gateway's embedder: loaded once on first use, requests coalesced into batches."""

    def __init__(self, settings: EmbeddingSettings | None = None, *, max_batch: int = 256,
                 per_tenant: int = 4, max_inputs: int = MAX_INPUTS) -> None:
        self.settings = settings or EmbeddingSettings()
        self.name = self.settings.model or DEFAULT_EMBEDDING_MODEL
        self.created = int(time.time())
        self.max_batch = max_batch
        self.per_tenant = per_tenant
        self.max_inputs = max_inputs
        self._embedder: Embedder | OnnxEmbedder | None = None
        self._loading: asyncio.Lock | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._queue: list[_Pending] = []
        self._drain: asyncio.Task | None = None
        self._in_flight: dict[str, int] = {}

    def serves(self, model: str) -> bool:
        """`model` names this embedder: its full id or its last part (`all-MiniLM-L6-v2`), any case."""
        wanted = model.lower()
        return wanted in (self.name.lower(), self.name.rsplit("/", 1)[-1].lower())

    async def embed(self, tenant: str, texts: list[str], dimensions: int | None = None) -> tuple[np.ndarray, int]:
        """One L2-normalised float32 row per text, and the word pieces read."""
        if self._in_flight.get(tenant, 0) >= self.per_tenant:
            raise ApiError(ErrorCode.RATE_LIMITED, f"{self.per_tenant} embedding requests of this API key are"
                           " already running: wait for one to finish", headers={"Retry-After": "1"})
        self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
        try:
            embedder = await self._load()
            if dimensions is not None and dimensions != embedder.dims:
                raise ApiError(ErrorCode.INVALID_PARAMETER, f"dimensions={dimensions}: {self.name} makes"
                               f" {embedder.dims}-dimensional vectors; omit dimensions or send {embedder.dims}",
                               param="dimensions")
            counts = await self._run(embedder.count_tokens, texts)
            too_long = [i for i, n in enumerate(counts) if n > embedder.max_tokens]
            if too_long:
                i = too_long[0]
                raise ApiError(ErrorCode.CONTEXT_LENGTH_EXCEEDED,
                               f"input[{i}] is {counts[i]} tokens; {self.name} reads at most {embedder.max_tokens}:"
                               " split the text", param="input")
            pending = _Pending(texts)
            self._queue.append(pending)
            if self._drain is None or self._drain.done():
                self._drain = asyncio.create_task(self._drain_queue(embedder))
            return await asyncio.shield(pending.done), sum(counts)
        finally:
            self._in_flight[tenant] -= 1
            if not self._in_flight[tenant]:
                del self._in_flight[tenant]

    async def _load(self) -> Embedder | OnnxEmbedder:
        if self._embedder is not None:
            return self._embedder
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if self._embedder is None:
                s = self.settings
                try:
                    self._embedder = await self._run(embedder_for, s)
                except EmbedderLoadError as exc:
                    log.error("embeddings unavailable: %s", exc)
                    raise ApiError(ErrorCode.MODALITY_UNAVAILABLE, f"the embedding model cannot be loaded: {exc}")
        return self._embedder

    async def _run(self, fn, *args, **kwargs):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="gateway-embed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def _drain_queue(self, embedder: Embedder | OnnxEmbedder) -> None:
        """Embed what is queued, as many requests per forward pass as `max_batch` texts allow."""
        while self._queue:
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                batch.append(self._queue.pop(0))
                size += len(batch[-1].texts)
            try:
                vectors = await self._run(embedder.encode, [t for p in batch for t in p.texts],
                                          self.settings.batch_size)
            except Exception as exc:  # noqa: BLE001 (every waiter gets the error, the loop goes on)
                log.exception("embedding a batch of %d texts failed", size)
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(ApiError(ErrorCode.GENERATION_ERROR, f"embedding failed: {exc}"))
                continue
            start = 0
            for p in batch:
                if not p.done.done():
                    p.done.set_result(vectors[start:start + len(p.texts)])
                start += len(p.texts)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def texts_of(body: EmbeddingRequest, max_inputs: int) -> list[str]:
    """The texts to embed, or a 400 that names what is wrong."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise ApiError(ErrorCode.EMPTY_INPUT, "input is an empty list: send a text or a list of texts",
                       param="input")
    if not all(isinstance(t, str) for t in texts):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "input holds token ids: genloom embeds text, send strings",
                       param="input")
    if len(texts) > max_inputs:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"input holds {len(texts)} texts; the limit is {max_inputs}:"
                       " split the request", param="input")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise ApiError(ErrorCode.EMPTY_INPUT, f"input[{blank[0]}] is empty: every text needs words",
                       param="input")
    return texts


def encode_vector(row: np.ndarray, fmt: str | None) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode()
    return row.tolist()


@router.post("/embeddings", summary="Embeddings (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": EmbeddingRequest.model_json_schema()}}}},
             responses={200: {"model": EmbeddingsResponse}})
async def create_embeddings(request: Request, tenant: str = Depends(tenant_of)) -> EmbeddingsResponse:
    state = request.app.state
    service: EmbeddingService = state.embeddings
    body = parse_body(EmbeddingRequest, await read_json(request, state.settings.max_body_bytes),
                      "an embeddings request")
    if not service.serves(body.model):
        raise ApiError(ErrorCode.MODEL_NOT_FOUND, f"embedding model {body.model!r} is not served here:"
                       f" use {service.name!r} (GET /v1/models)", param="model")
    texts = texts_of(body, service.max_inputs)
    vectors, tokens = await service.embed(tenant, texts, body.dimensions)
    data = [Embedding(index=i, embedding=encode_vector(row, body.encoding_format)) for i, row in enumerate(vectors)]
    return EmbeddingsResponse(data=data, model=body.model,
                              usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
