"""What genloom remembers about a caller's users, and the controls over it: feedback on a job, the
user's data exported or erased, memory turned on or off per user.

The user in a path is the caller's own id (what the job's `user` field said); genloom keys everything
on its tenant-scoped form (`scoped_user_id`), so one tenant never reaches another's users. Feedback
and erasure go through `genloom.memory`, in order with the user's other memory writes, to the
process that owns the vector index; the export and consent read and write the memory store directly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from infra.memory import open_store
from infra.memory.base import MemoryStore, Profile
from infra.redis import keys
from infra.redis.sessions import SessionStore
from infra.settings.core import StorageSettings
from infra.settings.memory import MemorySettings
from schemas.api import ErrorBody
from schemas.enums import ErrorCode
from schemas.memory import (
    EraseUser,
    ErasureReport,
    FeedbackAccepted,
    FeedbackIn,
    MemoryConsent,
    MemoryFeedback,
    MemoryStatus,
    UserData,
)

from .auth import tenant_of
from .body import read_json, scoped_user, validate
from .errors import ApiError, not_found

router = APIRouter(prefix="/v1", tags=["memory"])
_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 415, 503)}
#: how often DELETE .../data looks for the erasure's report while it waits
_POLL_S = 0.05


class MemoryAccess:
    """The gateway's handle on memory: settings, the store (opened on first use) and session turns."""

    def __init__(self, settings: MemorySettings, home: Path, redis) -> None:
        self.settings = settings
        self._home = home
        self.redis = redis
        self._store: MemoryStore | None = None
        self._lock = asyncio.Lock()

    async def store(self) -> MemoryStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    store = open_store(self.settings, self._home)
                    await store.start()
                    self._store = store
        return self._store

    @cached_property
    def sessions(self) -> SessionStore:
        return SessionStore(self.redis, turns=self.settings.session_turns, ttl_s=self.settings.session_ttl_s)

    async def session_turns(self, tenant: str, user: str) -> list[dict]:
        """Every session of the user with its recent turns (for the export)."""
        out = []
        for session in await self.sessions.sessions(tenant, user):
            turns = await self.sessions.recent(tenant, user, session)
            if turns:
                out.append({"session": session, "turns": [asdict(t) for t in turns]})
        return out

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None


def memory_access(redis) -> MemoryAccess:
    return MemoryAccess(MemorySettings(), StorageSettings().home, redis)


def _access(request: Request) -> MemoryAccess:
    return request.app.state.memory


@router.post("/feedback", status_code=202, summary="Feedback on one of your jobs (updates the user's memory)",
             responses={202: {"model": FeedbackAccepted}, **_ERRORS})
async def post_feedback(request: Request, tenant: str = Depends(tenant_of)) -> JSONResponse:
    state = request.app.state
    data = await read_json(request, state.settings.max_body_bytes)
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, "body must be a JSON object (job_id and a rating, correction or"
                       " preference)")
    body = validate(FeedbackIn, data)
    record = await state.jobs.require(body.job_id, tenant)  # 404 for an unknown or another tenant's job
    if record.user is None:
        raise ApiError(ErrorCode.INVALID_REQUEST, f"job {body.job_id!r} names no user, and feedback updates a user's"
                       " memory: submit jobs with `user` set", param="job_id")
    command = MemoryFeedback(tenant=tenant, user=record.user, job_id=state.jobs.internal_id(body.job_id, tenant),
                             rating=body.rating, correction=body.correction, preference=body.preference)
    await state.jobs.publish_memory(command, f"{tenant}/{record.user}")
    return JSONResponse(FeedbackAccepted(id=command.id, job_id=body.job_id).model_dump(mode="json"), status_code=202)


@router.get("/users/{user}/data", response_model=UserData, summary="Everything kept about one of your users",
            responses=_ERRORS)
async def export_user(user: str, request: Request, tenant: str = Depends(tenant_of)) -> UserData:
    access, scoped = _access(request), scoped_user(tenant, user, "user")
    kept = await (await access.store()).export(tenant, scoped)
    sessions = await access.session_turns(tenant, scoped)
    jobs = await request.app.state.jobs.store.user_job_ids(tenant, scoped)
    audits = await (await access.store()).audits(tenant, scoped)
    return UserData(user=user, exported_at=time.time(), profile=kept.get("profile"),
                    interactions=kept.get("interactions", []), facts=kept.get("facts", []),
                    feedback=kept.get("feedback", []), sessions=sessions, jobs=jobs,
                    erasures=[{"id": a.id, "action": a.action, "counts": a.counts, "at": a.at} for a in audits])


@router.delete("/users/{user}/data", response_model=ErasureReport, summary="Erase one of your users everywhere",
               responses={202: {"model": ErasureReport}, **_ERRORS})
async def erase_user(user: str, request: Request, response: Response,
                     tenant: str = Depends(tenant_of)) -> ErasureReport:
    access, scoped = _access(request), scoped_user(tenant, user, "user")
    command = EraseUser(tenant=tenant, user=scoped)
    await request.app.state.jobs.publish_memory(command, f"{tenant}/{scoped}")
    deadline = time.monotonic() + access.settings.erase_wait_s
    while True:
        report = await _report(access, command.id, scoped)
        if report is not None:
            return report.model_copy(update={"user": user})
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(_POLL_S)
    response.status_code = 202
    response.headers["Location"] = f"/v1/users/{user}/erasures/{command.id}"
    return ErasureReport(id=command.id, user=user, status="pending")


@router.get("/users/{user}/erasures/{erase_id}", response_model=ErasureReport, summary="How an erasure went",
            responses=_ERRORS)
async def get_erasure(user: str, erase_id: str, request: Request, tenant: str = Depends(tenant_of)) -> ErasureReport:
    scoped = scoped_user(tenant, user, "user")
    report = await _report(_access(request), erase_id, scoped)
    if report is None:
        # pending, or unknown: an erasure published but not yet done has no report either
        raise not_found("finished erasure", erase_id)
    return report.model_copy(update={"user": user})


async def _report(access: MemoryAccess, erase_id: str, scoped: str) -> ErasureReport | None:
    raw = await access.redis.get(keys.erasure(erase_id))
    if raw is None:
        return None
    report = ErasureReport.model_validate_json(raw)
    return report if report.user == scoped else None  # another user's (or tenant's) erasure: not yours


@router.get("/users/{user}/memory", response_model=MemoryStatus, summary="Whether a user is remembered",
            responses=_ERRORS)
async def get_memory(user: str, request: Request, tenant: str = Depends(tenant_of)) -> MemoryStatus:
    access, scoped = _access(request), scoped_user(tenant, user, "user")
    profile = await (await access.store()).get_profile(tenant, scoped)
    enabled = access.settings.remembers(tenant) and (profile is None or profile.memory_enabled)
    return MemoryStatus(user=user, enabled=enabled, retention_days=access.settings.retention_days_for(tenant))


@router.put("/users/{user}/memory", response_model=MemoryStatus, summary="Turn memory on or off for a user",
            responses=_ERRORS)
async def put_memory(user: str, request: Request, tenant: str = Depends(tenant_of)) -> MemoryStatus:
    access, scoped = _access(request), scoped_user(tenant, user, "user")
    data = await read_json(request, request.app.state.settings.max_body_bytes)
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, 'body must be a JSON object: {"enabled": true|false}')
    consent = validate(MemoryConsent, data)
    store = await access.store()
    now = time.time()
    profile = await store.get_profile(tenant, scoped) or Profile(tenant=tenant, user=scoped, created_at=now)
    profile.memory_enabled = consent.enabled
    profile.updated_at = now
    await store.put_profile(profile)
    return MemoryStatus(user=user, enabled=consent.enabled and access.settings.remembers(tenant),
                        retention_days=access.settings.retention_days_for(tenant))
