"""Vector indexes of users' memories: an embedded default on disk and a Weaviate adapter, one contract
(infra/vectors/base.py)."""

from __future__ import annotations

from pathlib import Path

from infra.settings.memory import MemorySettings

from .base import VectorHit, VectorIndex, VectorRecord

__all__ = ["VectorHit", "VectorIndex", "VectorRecord", "open_index"]


def open_index(settings: MemorySettings, home: Path, dims: int) -> VectorIndex:
    """The index the settings name, not started yet; `home` is GENLOOM_HOME (the embedded default's parent)."""
    if settings.vectors == "embedded":
        from .embedded import EmbeddedVectorIndex

        return EmbeddedVectorIndex(Path(settings.vector_path) if settings.vector_path else Path(home) / "vectors",
                                   dims)
    if settings.vectors == "weaviate":
        if not settings.weaviate_url:
            raise ValueError("GENLOOM_MEMORY_VECTORS=weaviate needs GENLOOM_MEMORY_WEAVIATE_URL (e.g. http://weaviate:8080)")
        from .weaviate import WeaviateVectorIndex

        return WeaviateVectorIndex.from_url(settings.weaviate_url, settings.weaviate_grpc_port, dims)
    raise ValueError(f"GENLOOM_MEMORY_VECTORS={settings.vectors!r}: choose `embedded` or `weaviate`")
