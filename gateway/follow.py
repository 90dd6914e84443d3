"""Following one job for one client: its replay log parsed into events once, keep-alives while it is
idle, a cancel when the client goes away before the end, and its terminal events as ApiErrors.

Every endpoint that shows a job's events (the job SSE and WebSocket, chat, speech, images) is a
format adapter over `follow_job`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection, Request

from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import Entry
from schemas.enums import ErrorCode, EventType
from schemas.events import Artifact, Cancelled, Completed, Failed, as_shown_to

from .artifacts import public_entry
from .errors import ApiError

#: cancels sent after a client went away; held so they finish even though the request is over
_BACKGROUND: set[asyncio.Task] = set()

#: why a job is cancelled when the client that was waiting for it leaves
DISCONNECTED = "client disconnected"


def parse_cursor(value: str | None) -> int | None:
    """A Last-Event-ID as a replay entry number; None when absent, ValueError when not one."""
    if value is None or value.strip() == "":
        return None
    number = int(value.strip())
    if number < 0:
        raise ValueError("negative")
    return number


def failure(event: Failed | Cancelled) -> ApiError:
    """The error of a job that ended without a result."""
    if isinstance(event, Failed):
        return ApiError(event.code, event.message)
    return cancelled(event)


def openai_failure(event: Failed | Cancelled) -> ApiError:
    """`failure` as the OpenAI-compatible endpoints answer it: a prompt moderation refused is
    OpenAI's policy refusal (400, content_policy_violation), which OpenAI's SDKs raise as BadRequestError."""
    if isinstance(event, Failed) and event.code is ErrorCode.CONTENT_FILTERED:
        return ApiError(ErrorCode.CONTENT_POLICY_VIOLATION, event.message)
    return failure(event)


def cancelled(event: Cancelled) -> ApiError:
    return ApiError(ErrorCode.CANCELLED,
                    f"the job was cancelled before it finished: {event.reason or 'on request'}")


def gone() -> ApiError:
    return ApiError(ErrorCode.CLIENT_DISCONNECTED, f"{DISCONNECTED}: the job was cancelled")


class JobFollow:
    """The job's entries in order, ending with the terminal one; None at each idle keep-alive interval.

    `job_id` is the tenant's id of the job: every entry shows it in place of the internal id.

    With `cancels` set, the client is asked whether it is still there at each idle interval, and a
    client that left (or an iteration closed before the terminal entry) cancels the job: nobody is
    waiting for its output. The iteration then ends early.
    """

    def __init__(self, conn: HTTPConnection, job_id: str, tenant: str, record: JobRecord, *, after: int | None,
                 cancels: bool) -> None:
        self._conn = conn
        self.job_id = job_id
        self._internal = conn.app.state.jobs.internal_id(job_id, tenant)
        self._tenant = tenant
        self._record = record
        self._after = after
        self._cancels = cancels
        self.done = False
        self._entries: AsyncIterator[Entry | None] | None = None

    def __aiter__(self) -> JobFollow:
        return self

    async def __anext__(self) -> Entry | None:
        if self._entries is None:
            self._entries = self._follow()
        return await anext(self._entries)

    async def _follow(self) -> AsyncIterator[Entry | None]:
        state = self._conn.app.state
        block_ms = int(state.settings.sse_keepalive_s * 1000)
        entries = state.jobs.store.follow(self._internal, self._record, self._after, block_ms)
        restorer = state.restoration.follower(self._internal, self._tenant)  # mappings are kept by internal id
        try:
            async for entry in entries:
                if entry is None and self._cancels and await self._disconnected():
                    self.stop(DISCONNECTED)
                    return
                if entry is None:
                    yield entry
                    continue
                if entry.terminal:
                    self.done = True
                shown = Entry(entry.id, entry.type, as_shown_to(entry.data, self._internal, self.job_id))
                for restored in await restorer.entries(public_entry(shown, self._tenant, self.job_id)):
                    yield restored
        finally:
            await entries.aclose()
            if not self.done and self._cancels:  # closed mid-way: the client went away
                self.stop(DISCONNECTED)

    async def _disconnected(self) -> bool:
        return isinstance(self._conn, Request) and await self._conn.is_disconnected()

    async def next_of(self, wanted: frozenset[EventType]) -> Entry | None:
        """The next entry of a type in `wanted` or a terminal one; None when the client left."""
        async for entry in self:
            if entry is not None and (entry.type in wanted or entry.terminal):
                return entry
        return None

    def stop(self, reason: str) -> None:
        """Cancel the job (in the background, so it finishes after the request) unless it has ended."""
        if self.done or not self._cancels:
            return
        self.done = True
        state = self._conn.app.state
        task = asyncio.get_running_loop().create_task(state.jobs.cancel(self.job_id, self._tenant, reason))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def aclose(self) -> None:
        if self._entries is not None:
            await self._entries.aclose()


async def follow_job(conn: HTTPConnection, job_id: str, tenant: str, *, after: int | None = None,
                     cancels: bool = True) -> JobFollow:
    """Follow a job of the tenant for the client of `conn` (404 when it has no such job);
    `cancels=False` for a watcher whose leaving never cancels (the job SSE and WebSocket)."""
    record = await conn.app.state.jobs.require(job_id, tenant)
    return JobFollow(conn, job_id, tenant, record, after=after, cancels=cancels)


@dataclass
class Outcome:
    """What a completed job left: its artifacts in index order, and its `completed` event."""

    completed: Completed
    artifacts: list[Artifact] = field(default_factory=list)


async def result_of(follow: JobFollow, fail: Callable[[Failed | Cancelled], ApiError] = failure) -> Outcome:
    """Wait for the job's end; a failure or cancel raises its ApiError (`fail` makes it), a client that left 499."""
    artifacts: dict[int, Artifact] = {}
    try:
        while True:
            entry = await follow.next_of(frozenset({EventType.ARTIFACT}))
            if entry is None:
                raise gone()
            event = entry.event
            if isinstance(event, Artifact):
                artifacts[event.index] = event
            elif isinstance(event, Completed):
                return Outcome(event, [artifacts[i] for i in sorted(artifacts)])
            else:
                raise fail(event)
    finally:
        await follow.aclose()

