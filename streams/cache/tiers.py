"""`SemanticCache`: the in-process tier in front of the shared Redis tier, as one object the cache
stage (lookups, misses) and the fill agent (answers) of a process share.

Redis is optional at every step: an error or a timeout opens a short breaker (no Redis call for
`retry_s`, so a dead Redis costs one timeout, not one per batch), the caller notes the cache as
degraded, and the in-process tier goes on alone.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from infra.redis.semcache import NewEntry, SemanticCacheStore, StoredVector

from .logic import Answer, Hit, LocalTier, best

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Miss:
    """What a job that missed is stored under once it completes."""

    scope: str
    vector: np.ndarray
    #: the job's id as its tenant gave it, for the answer's `source_job` when it serves a hit
    client_job_id: str | None = None

    def to_json(self) -> bytes:
        f16 = base64.b64encode(np.asarray(self.vector, dtype="<f2").tobytes()).decode()
        return json.dumps({"scope": self.scope, "f16": f16, "client_job_id": self.client_job_id}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Miss:
        data = json.loads(raw)
        return cls(data["scope"], _from_f16(base64.b64decode(data["f16"])), data.get("client_job_id"))


def _from_f16(raw: bytes) -> np.ndarray:
    vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _rows_from_f16(raw: bytes, dims: int) -> np.ndarray:
    """Stored float16 vectors as float32 rows, each normalised again (one pass for the whole scope)."""
    rows = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(-1, dims)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Scopes:
    """The shared tier's vectors of some scopes, as read at one moment (`SemanticCache.read_scopes`)."""

    vectors: dict[str, list[StoredVector]]
    #: the shared tier was skipped (its breaker is open) or failed: `vectors` holds nothing of it
    degraded: bool


class SemanticCache:
    def __init__(self, local: LocalTier, store: SemanticCacheStore | None, *, threshold: float, ttl_s: float,
                 retry_s: float = 1.0, max_pending: int = 10_000) -> None:
        self.local = local
        self.store = store
        self.threshold = threshold
        self.ttl_s = ttl_s
        self._retry_s = retry_s
        self._down_until = 0.0
        self._pending: OrderedDict[str, Miss] = OrderedDict()  # misses of this process's stage, oldest first
        self._max_pending = max_pending

    async def forget(self, job_ids: list[str]) -> int:
        """Drop the answers of these jobs from both tiers (erasure of a user); entries dropped. Raises the
        shared tier's error: an erasure must not report done when Redis kept a copy."""
        for job_id in job_ids:
            self._pending.pop(job_id, None)
        dropped = self.local.forget(set(job_ids))
        if self.store is not None:
            dropped += await self.store.forget(job_ids)
        return dropped

    def shared_up(self, now: float) -> bool:
        return self.store is not None and now >= self._down_until

    def _shared_failed(self, exc: BaseException, what: str) -> None:
        self._down_until = time.monotonic() + self._retry_s
        log.warning("semantic cache: Redis %s failed (%s); the in-process tier goes on alone for %.1fs",
                    what, exc, self._retry_s)

    async def read_scopes(self, scopes: list[str]) -> Scopes:
        """What the shared tier holds in these scopes (one round trip), for `may_hit` and a `lookup` soon after."""
        if self.store is None or not scopes:
            return Scopes({}, degraded=False)
        if not self.shared_up(time.monotonic()):
            return Scopes({}, degraded=True)
        try:
            return Scopes(await self.store.vectors(sorted(set(scopes))), degraded=False)
        except Exception as exc:
            self._shared_failed(exc, "lookup")
            return Scopes({}, degraded=True)

    def may_hit(self, scope: str, read: Scopes) -> bool:
        """Whether a lookup in `scope` can find anything: an unexpired entry in either tier (the shared
        tier's as `read`; when it could not be read, a lookup skips it as well)."""
        now = time.time()
        return self.local.holds(scope, now) or any(now - v.made_at <= self.ttl_s for v in read.vectors.get(scope, ()))

    async def lookup(self, queries: list[tuple[str, np.ndarray]],
                     read: Scopes | None = None) -> tuple[list[Hit | None], bool]:
        """A hit or None per (scope, vector), and whether the shared tier was skipped (degraded). `read`:
        the shared tier's vectors of these scopes read a moment ago (`read_scopes`), not read again."""
        now = time.time()
        hits: list[Hit | None] = [self.local.lookup(scope, vector, self.threshold, now) for scope, vector in queries]
        rest = [i for i, hit in enumerate(hits) if hit is None]
        if not rest or self.store is None:
            return hits, False
        if not self.shared_up(time.monotonic()):
            return hits, True
        try:
            scopes = sorted({queries[i][0] for i in rest})
            if read is not None and not read.degraded and all(s in read.vectors for s in scopes):
                stored = read.vectors
            else:
                stored = await self.store.vectors(scopes)
            wanted: list[tuple[int, str, float, np.ndarray]] = []
            for i in rest:  # hot loop: one matrix product per job
                scope, vector = queries[i]
                fresh = [v for v in stored[scope] if now - v.made_at <= self.ttl_s and len(v.f16) == 2 * len(vector)]
                if not fresh:
                    continue
                matrix = _rows_from_f16(b"".join(v.f16 for v in fresh), len(vector))
                found = best(matrix, vector, self.threshold)
                if found is not None:
                    wanted.append((i, fresh[found[0]].entry_id, found[1], matrix[found[0]]))
            if wanted:
                bodies = await self.store.answers([(queries[i][0], eid) for i, eid, _, _ in wanted], now)
                for (i, _, similarity, row), body in zip(wanted, bodies):
                    if body is None:  # evicted between the two reads
                        continue
                    answer = Answer.from_json(body)
                    hits[i] = Hit(answer, similarity)
                    self.local.put(queries[i][0], row, answer, now)  # the next repeat is answered here
        except Exception as exc:  # Redis down, slow or refusing: this batch goes on with what it has
            self._shared_failed(exc, "lookup")
            return hits, True
        return hits, False

    async def remember_misses(self, misses: list[tuple[str, Miss]]) -> bool:
        """Note (job id, miss) so the fill stores the answer; False when the shared tier was skipped."""
        for job_id, miss in misses:
            self._pending[job_id] = miss
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)
        if self.store is None:
            return True
        if not self.shared_up(time.monotonic()):
            return False
        try:
            await self.store.remember_misses([(job_id, miss.to_json()) for job_id, miss in misses])
        except Exception as exc:
            self._shared_failed(exc, "write")
            return False
        return True

    async def claim(self, job_ids: list[str]) -> dict[str, Miss]:
        """The misses of these finished jobs (recorded here or by any other processor)."""
        found = {job_id: self._pending.pop(job_id) for job_id in job_ids if job_id in self._pending}
        if self.store is not None and self.shared_up(time.monotonic()):
            try:
                replies = await self.store.claim_misses(job_ids)
            except Exception as exc:
                self._shared_failed(exc, "read")
            else:
                for job_id, raw in zip(job_ids, replies):
                    if raw is not None and job_id not in found:
                        found[job_id] = Miss.from_json(raw)
        return found

    async def store_answers(self, answers: list[tuple[Miss, Answer]]) -> None:
        """Put answers in both tiers (the shared one when it is up)."""
        now = time.time()
        for miss, answer in answers:
            self.local.put(miss.scope, miss.vector, answer, now)
        if not answers or self.store is None or not self.shared_up(time.monotonic()):
            return
        entries = [NewEntry(scope=miss.scope, entry_id=answer.job_id,
                            f16=np.asarray(miss.vector, dtype="<f2").tobytes(), answer=answer.to_json(),
                            made_at=answer.created_at, nbytes=answer.nbytes) for miss, answer in answers]
        try:
            await self.store.put_many(entries, now)
        except Exception as exc:
            self._shared_failed(exc, "write")
