"""`EmbeddingStage`: one model call for every pending job of a batch, off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import numpy as np

from infra.models.embedder import Embedder, OnnxEmbedder, embedder_for
from infra.settings.streams import EmbeddingSettings

from ..stages import Item
from .logic import pack, prompt_text

log = logging.getLogger(__name__)


class EmbeddingStage:
    """Sets `item.embedding` (float32, L2-normalised) and the request's `embedding` field.

    The vectors of the last `recent` texts embedded are kept by the SHA-256 of the text (never the
    text): a prompt asked again, as the semantic cache's traffic is, skips the model, which is most
    of the stage's time. The text embedded is the redacted one (the privacy stage runs first).

    A job whose vector no later stage's `run` reads (`needed_now`: a cache-eligible chat whose scope
    holds nothing yet) is embedded in `after_sent`, once its message is on its way to the worker: the
    vector then only labels the answer the cache will store."""

    name = "embedding"

    def __init__(self, embedder: Embedder | OnnxEmbedder, *, batch_size: int = 64, recent: int = 4096) -> None:
        self._embedder = embedder
        self._batch_size = batch_size
        self._recent_max = recent
        self._recent: OrderedDict[bytes, np.ndarray] = OrderedDict()
        #: which jobs a later stage reads the vector of (None: all of them); set by the chain's builder
        self.wanted: Callable[[Item], bool] | None = None
        #: of those, which a later stage's `run` reads (None: all of them); set by the chain's builder
        self.needed_now: Callable[[list[Item]], Awaitable[list[bool]]] | None = None

    async def run(self, items: list[Item]) -> None:
        wanted = self.wanted
        pending = [item for item in items if item.pending and (wanted is None or wanted(item))]
        if not pending:
            return
        now = await self.needed_now(pending) if self.needed_now is not None else [True] * len(pending)
        texts = [prompt_text(item.request) for item in pending]
        digests = [_digest(t) for t in texts]
        todo = {d: t for d, t, n in zip(digests, texts, now) if n}
        known = await self._vectors(todo)
        if known is None:  # the model, not a job, failed: the jobs go on without a vector (and uncached)
            for item in pending:
                item.degraded.append(self.name)
            return
        for item, digest in zip(pending, digests):  # hot loop: one pass over the batch
            vector = known.get(digest)
            if vector is None:
                vector = self._recent.get(digest)  # asked before: free now
            if vector is None:
                item.embedding_later = True
                continue
            item.embedding = vector
            item.request = item.request.model_copy(update={"embedding": pack(vector, self._embedder.name)})

    async def after_sent(self, items: list[Item]) -> None:
        """The vectors left for later, in one model call (the jobs are sent: only `item.embedding` is set)."""
        late = [item for item in items if item.pending and item.embedding_later and item.embedding is None]
        if not late:
            return
        texts = [prompt_text(item.request) for item in late]
        digests = [_digest(t) for t in texts]
        known = await self._vectors(dict(zip(digests, texts)))
        if known is None:
            return
        for item, digest in zip(late, digests):
            item.embedding = known[digest]

    async def _vectors(self, texts: dict[bytes, str]) -> dict[bytes, np.ndarray] | None:
        """The vector of each text by its digest (the recent ones without the model); None when the model failed."""
        known = {d: self._recent[d] for d in texts if d in self._recent}
        todo = {d: t for d, t in texts.items() if d not in known}  # repeats in the batch embedded once
        if todo:
            try:
                # CPU work (milliseconds per short prompt): a thread keeps the event loop serving
                vectors = await asyncio.to_thread(self._embedder.encode, list(todo.values()), self._batch_size)
            except Exception:
                log.exception("embedding: the model failed on a batch of %d; the jobs go on without embeddings",
                              len(todo))
                return None
            for digest, vector in zip(todo, vectors):
                known[digest] = self._remember(digest, vector)
        for digest in known:
            if digest in self._recent:
                self._recent.move_to_end(digest)
        return known

    def _remember(self, digest: bytes, vector: np.ndarray) -> np.ndarray:
        vector = np.array(vector, dtype=np.float32)  # its own row, not a view of the batch's matrix
        vector.setflags(write=False)  # shared by every job that asks the same
        if self._recent_max > 0:
            self._recent[digest] = vector
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
        return vector


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def build_stage(settings: EmbeddingSettings) -> EmbeddingStage:
    """The stage over the process's embedder (loaded here, once per process, at start)."""
    embedder = embedder_for(settings)
    return EmbeddingStage(embedder, batch_size=settings.batch_size, recent=settings.recent)
