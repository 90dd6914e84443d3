"""The reconciler's loop: one streams process at a time (a lock in Redis with an expiry) drops
in-flight slots of expired or ended jobs and ends lost jobs through `JobStore.end_lost`, the same
script as every event (one terminal event, its webhook owed, its slot released). Less often, it
deletes job artifacts older than the blob TTL (their job records expired before them)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from infra.blob.base import ARTIFACT_PREFIX, BlobStore
from infra.redis.jobstore import Appended, JobStore
from infra.settings.streams import ReconcilerSettings

from .logic import lost_jobs

log = logging.getLogger(__name__)

#: asks the workers to stop a job (job id, tenant, reason): a cancel on genloom.control
StopWork = Callable[[str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Sweep:
    """One sweep: whether this process led it, jobs still held, and the lost jobs it ended."""

    led: bool
    held: int = 0
    ended: tuple[str, ...] = ()
    #: artifacts deleted for their age (None: not this sweep)
    expired: int | None = None


class Reconciler:
    def __init__(self, store: JobStore, settings: ReconcilerSettings, *, holder: str,
                 clock: Callable[[], float] = time.time, blobs: BlobStore | None = None,
                 blob_ttl_s: float = 0, stop_work: StopWork | None = None) -> None:
        self._store = store
        self._settings = settings
        self._holder = holder
        self._clock = clock
        self._blobs = blobs if blob_ttl_s > 0 else None
        self._blob_ttl_s = blob_ttl_s
        self._next_blob_sweep = 0.0
        self._stop_work = stop_work

    async def sweep(self) -> Sweep:
        """One pass, when this process holds (or takes) the lock."""
        if not await self._store.lead(self._holder, self._settings.lock_ttl_s):
            return Sweep(led=False)
        now = self._clock()
        found = await self._store.reconcile(now, self._settings.limits)
        ended = []
        for lost in lost_jobs(found.lost, now, self._settings):
            if isinstance(await self._store.end_lost(lost.job_id, lost.message, now), Appended):
                log.warning("reconciler: ended job %s: %s", lost.job_id, lost.message)
                ended.append(lost.job_id)
                await self._stop(lost.job_id, lost.tenant)
        expired = None
        if self._blobs is not None and now >= self._next_blob_sweep:
            self._next_blob_sweep = now + self._settings.artifact_sweep_s
            expired = await self._blobs.expire(ARTIFACT_PREFIX, now - self._blob_ttl_s)
            if expired:
                log.info("reconciler: deleted %d artifact(s) older than %.0fs", expired, self._blob_ttl_s)
        return Sweep(led=True, held=found.held, ended=tuple(ended), expired=expired)

    async def _stop(self, job_id: str, tenant: str) -> None:
        """A worker that still holds the job (stuck, or cut off) stops it; its late events are dropped anyway."""
        if self._stop_work is None or not tenant:
            return
        try:
            await self._stop_work(job_id, tenant, "job_lost: ended by the reconciler")
        except Exception as exc:  # the job has ended; only a worker's wasted effort is at stake
            log.warning("reconciler: could not ask the workers to stop job %s: %s", job_id, exc)

    async def run(self) -> None:
        """Until cancelled; a Redis error or a bug waits for the next sweep instead of ending the loop."""
        while True:
            try:
                await self.sweep()
            except RedisError as exc:
                log.warning("reconciler: Redis refused (%s); next sweep in %.0fs", exc, self._settings.interval_s)
            except Exception:
                log.exception("reconciler: sweep failed; next sweep in %.0fs", self._settings.interval_s)
            await asyncio.sleep(self._settings.interval_s)
