"""The vector index's contract. Every call is scoped by (tenant, user): a query sees only that user's
vectors, whatever the backend does underneath. Vectors are float32, L2-normalised, of the index's
`dims`; scores are cosine similarities (higher is closer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class VectorRecord:
    id: str  # the interaction's or fact's id
    vector: np.ndarray
    kind: str  # "interaction" | "fact"
    created_at: float
    expires_at: float | None = None


@dataclass(frozen=True)
class VectorHit:
    id: str
    kind: str
    score: float
    created_at: float


class VectorIndex(Protocol):
    dims: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, tenant: str, user: str, records: list[VectorRecord]) -> None:
        """Insert or replace by id."""

    async def query(
        self, tenant: str, user: str, vector: np.ndarray, k: int, kinds: tuple[str, ...] | None = None
    ) -> list[VectorHit]:
        """The k nearest of the user's vectors (of `kinds` when given), best first."""

    async def delete(self, tenant: str, user: str, ids: list[str]) -> int: ...

    async def erase(self, tenant: str, user: str) -> int:
        """Delete all the user's vectors; how many. Twice: 0."""

    async def sweep(self, now: float) -> int:
        """Delete vectors whose `expires_at` has passed; how many."""

    async def count(self, tenant: str, user: str) -> int: ...
