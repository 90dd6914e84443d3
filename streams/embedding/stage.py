"""`EmbeddingStage`: one model call for every pending job of a batch, off the event loop."""

from __future__ import annotations

import asyncio
import logging

from infra.models.embedder import Embedder, load_embedder
from infra.settings.streams import EmbeddingSettings

from ..stages import Item
from .logic import pack, prompt_text

log = logging.getLogger(__name__)


class EmbeddingStage:
    """Sets `item.embedding` (float32, L2-normalised) and the request's `embedding` field."""

    name = "embedding"

    def __init__(self, embedder: Embedder, *, batch_size: int = 64) -> None:
        self._embedder = embedder
        self._batch_size = batch_size

    async def run(self, items: list[Item]) -> None:
        pending = [item for item in items if item.pending]
        if not pending:
            return
        texts = [prompt_text(item.request) for item in pending]
        try:
            # CPU work (about a millisecond per short prompt): a thread keeps the event loop serving
            vectors = await asyncio.to_thread(self._embedder.encode, texts, self._batch_size)
        except Exception:  # the model, not a job, failed: the jobs go on without a vector (and uncached)
            log.exception("embedding: the model failed on a batch of %d; the jobs go on without embeddings",
                          len(pending))
            for item in pending:
                item.degraded.append(self.name)
            return
        for item, vector in zip(pending, vectors):  # hot loop: one pass over the batch
            item.embedding = vector
            item.request = item.request.model_copy(update={"embedding": pack(vector, self._embedder.name)})


def build_stage(settings: EmbeddingSettings) -> EmbeddingStage:
    """The stage over the process's embedder (loaded here, once per process, at start)."""
    embedder = load_embedder(settings.model, device=settings.device, max_chars=settings.max_chars,
                             dtype=settings.dtype)
    return EmbeddingStage(embedder, batch_size=settings.batch_size)
