"""Following a job from an OpenAI endpoint: its events off the replay log, its artifacts out of the
blob store, and a cancel when the client goes away before the end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from infra.blob import BlobNotFound
from schemas.enums import ErrorCode

from ..errors import ApiError
from ..replay import Entry, follow
from .media import artifact_key_of

#: cancels sent after a client went away; held so they finish even though the request is over
_BACKGROUND: set[asyncio.Task] = set()


@dataclass
class Outcome:
    """What a completed job left: its artifacts' event payloads by index, and its `completed` event."""

    artifacts: dict[int, dict] = field(default_factory=dict)
    completed: dict = field(default_factory=dict)

    def in_order(self) -> list[dict]:
        return [self.artifacts[i] for i in sorted(self.artifacts)]


def cancel_later(request: Request, job_id: str, tenant: str, reason: str) -> None:
    task = asyncio.get_running_loop().create_task(request.app.state.jobs.cancel(job_id, tenant, reason))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def failure(entry: Entry) -> ApiError:
    """The HTTP error of a job that ended without a result."""
    data = json.loads(entry.data)
    if entry.type == "failed":
        return ApiError(ErrorCode(data["code"]), data["message"])
    return ApiError(ErrorCode.INVALID_REQUEST,
                    f"the job was cancelled before it finished: {data.get('reason') or 'on request'}")


async def events_of(request: Request, job_id: str, tenant: str) -> AsyncIterator[Entry | None]:
    """The job's replay log from its first entry; None after each idle wait."""
    state = request.app.state
    record = await state.jobs.require(job_id, tenant)
    return follow(state.redis, job_id, record, None, int(state.settings.sse_keepalive_s * 1000))


async def next_event(events: AsyncIterator[Entry | None], request: Request, job_id: str, tenant: str,
                     wanted: frozenset[str]) -> Entry | None:
    """The next entry of a type in `wanted` or a terminal one; None when the client left (job cancelled)."""
    async for entry in events:
        if entry is None:
            if await request.is_disconnected():
                cancel_later(request, job_id, tenant, "client disconnected")
                return None
            continue
        if entry.type in wanted or entry.terminal:
            return entry
    return None


async def wait_for_result(request: Request, job_id: str, tenant: str) -> Outcome:
    """Block until the job completes; a failure or cancel raises its ApiError."""
    events = await events_of(request, job_id, tenant)
    outcome = Outcome()
    try:
        while True:
            entry = await next_event(events, request, job_id, tenant, frozenset({"artifact"}))
            if entry is None:
                raise ApiError(ErrorCode.INVALID_REQUEST, "client disconnected: the job was cancelled")
            if entry.type == "artifact":
                data = json.loads(entry.data)
                outcome.artifacts[data.get("index", 0)] = data
            elif entry.type == "completed":
                outcome.completed = json.loads(entry.data)
                return outcome
            else:
                raise failure(entry)
    finally:
        await events.aclose()


async def read_artifact(request: Request, artifact: dict, tenant: str, job_id: str) -> bytes:
    key = artifact_key_of(artifact["uri"], tenant, job_id)
    try:
        return await request.app.state.blobs.get(key)
    except BlobNotFound:
        raise ApiError(ErrorCode.NOT_FOUND, f"the artifact {key!r} of job {job_id} is no longer stored") from None
