"""The vector indexes the contract suite runs against: the embedded one always (scanned exactly, and
with a tiny threshold so its HNSW path runs too), Weaviate when GENLOOM_WEAVIATE_URL names a server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from infra.vectors.base import VectorIndex
from infra.vectors.embedded import EmbeddedVectorIndex

DIMS = 16
#: the embedded index's exact-scan limit in the "embedded-hnsw" variant: the suite's sets are larger
SMALL_EXACT_MAX = 40
WEAVIATE_URL = os.environ.get("GENLOOM_WEAVIATE_URL", "")

Opener = Callable[[], Awaitable[VectorIndex]]


@pytest.fixture(params=["embedded", "embedded-hnsw", "weaviate"])
async def open_index(request, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens (and starts) an index on the same storage each call, so a test can close and reopen it."""
    opened: list[VectorIndex] = []
    collection = f"GenloomTest{uuid.uuid4().hex[:12]}"
    if request.param == "weaviate":
        if not WEAVIATE_URL:
            pytest.skip("GENLOOM_WEAVIATE_URL is not set: no Weaviate server can run on this machine (no registry "
                        "ships one); point it at a server to run the contract against Weaviate")
        from infra.vectors.weaviate import WeaviateVectorIndex

        def make() -> VectorIndex:
            return WeaviateVectorIndex.from_url(WEAVIATE_URL, int(os.environ.get("GENLOOM_WEAVIATE_GRPC_PORT", "50051")),
                                                DIMS, collection=collection)
    else:
        exact_max = SMALL_EXACT_MAX if request.param == "embedded-hnsw" else 20_000

        def make() -> VectorIndex:
            return EmbeddedVectorIndex(tmp_path / "vectors", DIMS, exact_max=exact_max)

    async def open_() -> VectorIndex:
        index = make()
        await index.start()
        opened.append(index)
        return index

    yield open_
    if request.param == "weaviate":
        cleanup = await open_()  # a fresh client: the test may have closed its own
        await cleanup.client.collections.delete(collection)
    for index in opened:
        await index.close()
