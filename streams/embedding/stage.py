"""`EmbeddingStage`: one model call for every pending job of a batch, off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict

import numpy as np

from infra.models.embedder import Embedder, load_embedder
from infra.settings.streams import EmbeddingSettings

from ..stages import Item
from .logic import pack, prompt_text

log = logging.getLogger(__name__)


class EmbeddingStage:
    """Sets `item.embedding` (float32, L2-normalised) and the request's `embedding` field.

    The vectors of the last `recent` texts embedded are kept by the SHA-256 of the text (never the
    text): a prompt asked again, as the semantic cache's traffic is, skips the model, which is most
    of the stage's time. The text embedded is the redacted one (the privacy stage runs first)."""

    name = "embedding"

    def __init__(self, embedder: Embedder, *, batch_size: int = 64, recent: int = 4096) -> None:
        self._embedder = embedder
        self._batch_size = batch_size
        self._recent_max = recent
        self._recent: OrderedDict[bytes, np.ndarray] = OrderedDict()

    async def run(self, items: list[Item]) -> None:
        pending = [item for item in items if item.pending]
        if not pending:
            return
        texts = [prompt_text(item.request) for item in pending]
        digests = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        known = {d: self._recent[d] for d in digests if d in self._recent}
        todo = {d: t for d, t in zip(digests, texts) if d not in known}  # repeats in the batch embedded once
        if todo:
            try:
                # CPU work (milliseconds per short prompt): a thread keeps the event loop serving
                vectors = await asyncio.to_thread(self._embedder.encode, list(todo.values()), self._batch_size)
            except Exception:  # the model, not a job, failed: the jobs go on without a vector (and uncached)
                log.exception("embedding: the model failed on a batch of %d; the jobs go on without embeddings",
                              len(todo))
                for item in pending:
                    item.degraded.append(self.name)
                return
            for digest, vector in zip(todo, vectors):
                known[digest] = self._remember(digest, vector)
        for digest in known:
            if digest in self._recent:
                self._recent.move_to_end(digest)
        for item, digest in zip(pending, digests):  # hot loop: one pass over the batch
            item.embedding = known[digest]
            item.request = item.request.model_copy(update={"embedding": pack(known[digest], self._embedder.name)})

    def _remember(self, digest: bytes, vector: np.ndarray) -> np.ndarray:
        vector = np.array(vector, dtype=np.float32)  # its own row, not a view of the batch's matrix
        vector.setflags(write=False)  # shared by every job that asks the same
        if self._recent_max > 0:
            self._recent[digest] = vector
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
        return vector


def build_stage(settings: EmbeddingSettings) -> EmbeddingStage:
    """The stage over the process's embedder (loaded here, once per process, at start)."""
    embedder = load_embedder(settings.model, device=settings.device, max_chars=settings.max_chars,
                             dtype=settings.dtype)
    return EmbeddingStage(embedder, batch_size=settings.batch_size, recent=settings.recent)
