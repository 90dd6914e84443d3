"""The job API: submit, status, cancel, and the event stream over SSE and WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, Depends, Header, Query, Request, Response, WebSocket
from starlette.requests import HTTPConnection
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect

from infra.redis.jobstore import ReplayExpired
from infra.settings.gateway import GatewaySettings
from schemas.api import ErrorBody, JobList, JobToken, JobView
from schemas.enums import ErrorCode
from schemas.requests import REQUEST_ADAPTER

from . import sse
from .artifacts import public_view
from .auth import authenticate, tenant_of
from .body import build_request, check_content_type, parse_json, read_bounded
from .errors import ApiError, backend_unavailable
from .follow import JobFollow, follow_job, parse_cursor
from .lifecycle import JobService
from .limits import Lifetime, TokenBucket
from .redact import query_token

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 429, 503)}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerationRequest"}}},
    }
}

#: WebSocket close codes (the 4000-4999 range is the application's)
WS_UNAUTHORIZED, WS_NOT_FOUND, WS_REPLAY_EXPIRED, WS_BAD_CURSOR = 4401, 4404, 4410, 4400
#: too many WebSockets open for the key (the reason says Retry-After); the stream lived its longest
WS_TOO_MANY, WS_LIFETIME = 4429, 4408
#: standard codes: policy violation (a frame flood), message too big, try again later (Redis down)
WS_POLICY, WS_TOO_BIG, WS_TRY_LATER = 1008, 1009, 1013
WS_FORBIDDEN = 4403
_WS_CLOSE = {ErrorCode.UNAUTHORIZED: WS_UNAUTHORIZED, ErrorCode.FORBIDDEN: WS_FORBIDDEN, ErrorCode.NOT_FOUND: WS_NOT_FOUND,
             ErrorCode.RATE_LIMITED: WS_TOO_MANY, ErrorCode.BACKEND_UNAVAILABLE: WS_TRY_LATER}


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


def _stream_tenant(conn: HTTPConnection, job_id: str) -> str:
    """The tenant of a job stream's caller: the API key in the Authorization header, else a browser
    token of this very job in ``?token=`` (taken out of the logged query by gateway/redact.py)."""
    token = query_token(conn.scope)
    if token is not None and conn.headers.get("authorization") is None:
        return conn.app.state.browser_tokens.tenant_for(token, job_id)
    return authenticate(conn.app.state.api_keys, conn.headers.get("authorization"))


def _cursor(header: str | None, query: str | None) -> int | None:
    try:
        return parse_cursor(header if header is not None else query)
    except ValueError:
        raise ApiError(
            ErrorCode.INVALID_PARAMETER,
            "Last-Event-ID must be the non-negative integer `id` of an event you received",
            param="Last-Event-ID",
        ) from None


@router.post("", status_code=202, response_model=JobView, responses=_ERRORS, openapi_extra=_REQUEST_BODY,
             summary="Submit a generation job")
async def submit_job(
    request: Request,
    response: Response,
    tenant: str = Depends(tenant_of),
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
) -> JobView:
    state = request.app.state
    check_content_type(request.headers.get("content-type"))
    raw = await read_bounded(request, state.settings.max_body_bytes)
    job_request = await state.offload.run(tenant, _parse_request, raw, tenant, idempotency_key)
    await state.webhooks.check(job_request)
    job, created = await _jobs(request).submit(job_request)
    if not created:
        response.status_code = 200
    return public_view(job, tenant)


def _parse_request(raw: bytes, tenant: str, idempotency_key: str | None):
    return build_request(parse_json(raw), tenant, idempotency_key)


@router.get("", response_model=JobList, responses=_ERRORS, summary="The caller's most recent jobs, newest first")
async def list_jobs(request: Request, tenant: str = Depends(tenant_of),
                    limit: int = Query(default=20, ge=1, le=100)) -> JobList:
    restoration = request.app.state.restoration
    views = [await restoration.view(view, tenant) for view in await _jobs(request).recent(tenant, limit)]
    return JobList(data=[public_view(view, tenant) for view in views])


@router.get("/{job_id}", response_model=JobView, responses=_ERRORS, summary="A job's status")
async def get_job(job_id: str, request: Request, tenant: str = Depends(tenant_of)) -> JobView:
    view = await request.app.state.restoration.view(await _jobs(request).get(job_id, tenant), tenant)
    return public_view(view, tenant)


@router.post("/{job_id}/cancel", response_model=JobView, responses=_ERRORS, summary="Cancel a job",
             description="202 when this call published the cancel; 200 when it was cancelled or finished already.")
async def cancel_job(job_id: str, request: Request, response: Response, tenant: str = Depends(tenant_of)) -> JobView:
    job, published = await _jobs(request).cancel(job_id, tenant)
    response.status_code = 202 if published else 200
    return public_view(job, tenant)


@router.post("/{job_id}/token", response_model=JobToken, responses=_ERRORS,
             summary="A short-lived token for a browser to follow this job",
             description="Accepted only by this job's `/events` and `/ws` as `?token=`, until `expires_at`.")
async def job_token(job_id: str, request: Request, tenant: str = Depends(tenant_of)) -> JobToken:
    await _jobs(request).get(job_id, tenant)  # 404 unless the tenant has this job
    grant = request.app.state.browser_tokens.issue(tenant, job_id)
    return JobToken(token=grant.token, expires_at=grant.expires_at)


@router.get("/{job_id}/events", responses=_ERRORS, response_class=StreamingResponse,
            summary="The job's events as server-sent events, resumable with Last-Event-ID")
async def job_events(
    job_id: str,
    request: Request,
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    last_event_id: str | None = Query(default=None),
) -> StreamingResponse:
    tenant = _stream_tenant(request, job_id)
    after = _cursor(last_event_id_header, last_event_id)
    state = request.app.state
    slot = state.sse_slots.take(tenant)
    try:
        follow = await follow_job(request, job_id, tenant, after=after, cancels=False)
    except BaseException:
        slot.release()
        raise
    return StreamingResponse(
        sse.stream(follow, Lifetime(state.settings.stream_max_lifetime_s), slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(slot.release),  # also when the body never started
    )


@router.websocket("/{job_id}/ws")
async def job_websocket(websocket: WebSocket, job_id: str, last_event_id: str | None = None) -> None:
    """Frames ``{"id", "type", "event"}``; send ``{"type": "cancel"}`` to cancel the job.

    Authenticated by the API key in the Authorization header, or (a browser) by ``?token=`` from
    ``POST /v1/jobs/{id}/token``, taken from the query before anything logs it (gateway/redact.py)."""
    state = websocket.app.state
    settings = state.settings
    await websocket.accept()
    slot = None
    try:
        tenant = _stream_tenant(websocket, job_id)
        after = _cursor(websocket.headers.get("last-event-id"), last_event_id)
        slot = state.ws_slots.take(tenant)
        follow = await follow_job(websocket, job_id, tenant, after=after, cancels=False)
    except (ApiError, RedisError) as exc:
        if slot is not None:
            slot.release()
        err = backend_unavailable(exc) if isinstance(exc, RedisError) else exc
        await websocket.send_text(err.body().model_dump_json())
        await websocket.close(code=_WS_CLOSE.get(err.code, WS_BAD_CURSOR), reason=_retry_reason(err))
        return
    try:
        lock = asyncio.Lock()
        writer = asyncio.create_task(_write(websocket, follow, lock, Lifetime(settings.stream_max_lifetime_s)))
        listener = asyncio.create_task(_listen(websocket, state.jobs, job_id, tenant, lock, settings))
        # the client leaving ends the listener, which stops the reading at once (the job goes on)
        await asyncio.wait({writer, listener}, return_when=asyncio.FIRST_COMPLETED)
        for task in (writer, listener):
            task.cancel()
        await asyncio.gather(writer, listener, return_exceptions=True)
    finally:
        slot.release()


def _retry_reason(err: ApiError) -> str:
    retry = (err.headers or {}).get("Retry-After")
    return f"Retry-After: {retry}" if retry else ""


async def _write(websocket: WebSocket, follow: JobFollow, lock: asyncio.Lock, lifetime: Lifetime) -> None:
    last_id: int | None = None
    try:
        async for entry in follow:
            if entry is not None:
                last_id = entry.id
                text = '{"id":%d,"type":%s,"event":%s}' % (entry.id, json.dumps(entry.type), entry.data.decode())
                async with lock:
                    await websocket.send_text(text)
                if entry.terminal:
                    break
            if lifetime.over:
                err = ApiError(ErrorCode.DEADLINE_EXCEEDED, lifetime.message(last_id))
                async with lock:
                    await websocket.send_text(err.body().model_dump_json())
                    await websocket.close(code=WS_LIFETIME)
                return
        async with lock:
            await websocket.close(code=1000)
    except ReplayExpired as exc:
        err = ApiError(ErrorCode.REPLAY_EXPIRED, str(exc))
        async with lock:
            await websocket.send_text(err.body().model_dump_json())
            await websocket.close(code=WS_REPLAY_EXPIRED)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client closed mid-send
    finally:
        await follow.aclose()


async def _listen(websocket: WebSocket, jobs: JobService, job_id: str, tenant: str, lock: asyncio.Lock,
                  settings: GatewaySettings) -> None:
    """Read client frames until it disconnects; a cancel frame cancels the job. A frame over
    `ws_max_frame_bytes` closes with 1009, a flood past the message rate with 1008."""
    bucket = TokenBucket(settings.ws_messages_per_s, settings.ws_message_burst)
    while True:
        try:
            raw = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if raw["type"] == "websocket.disconnect":
            return
        payload = raw.get("text") if raw.get("text") is not None else raw.get("bytes") or b""
        close = None
        if len(payload) > settings.ws_max_frame_bytes:
            close = (WS_TOO_BIG, f"frame over {settings.ws_max_frame_bytes} bytes")
        elif not bucket.take():
            close = (WS_POLICY, f"more than {settings.ws_messages_per_s:g} frames a second")
        if close is not None:
            async with lock:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await websocket.close(code=close[0], reason=close[1])
            return
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            message = None
        if isinstance(message, dict) and message.get("type") == "cancel":
            try:
                job, published = await jobs.cancel(job_id, tenant, message.get("reason"))
                reply = {"type": "cancel_ack", "published": published, "job": public_view(job, tenant).model_dump(mode="json")}
            except ApiError as err:
                reply = err.body().model_dump(mode="json")
            except RedisError as exc:
                reply = backend_unavailable(exc).body().model_dump(mode="json")
        else:
            reply = ApiError(ErrorCode.INVALID_REQUEST, 'unknown frame: send {"type": "cancel"}').body().model_dump(mode="json")
        async with lock:
            try:
                await websocket.send_text(json.dumps(reply))
            except (WebSocketDisconnect, RuntimeError):
                return


def request_schema() -> dict:
    """GenerationRequest's JSON schema with refs into the OpenAPI components."""
    return REQUEST_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
