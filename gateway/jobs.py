"""The job API: submit, status, cancel, and the event stream over SSE and WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, Depends, Header, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from infra.redis.jobstore import ReplayExpired
from schemas.api import ErrorBody, JobView
from schemas.enums import ErrorCode
from schemas.requests import REQUEST_ADAPTER

from . import sse
from .auth import authenticate, tenant_of
from .body import build_request, read_json
from .errors import ApiError
from .follow import JobFollow, follow_job, parse_cursor
from .lifecycle import JobService

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 409, 413, 415, 429, 503)}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerationRequest"}}},
    }
}

#: WebSocket close codes (the 4000-4999 range is the application's)
WS_UNAUTHORIZED, WS_NOT_FOUND, WS_REPLAY_EXPIRED, WS_BAD_CURSOR = 4401, 4404, 4410, 4400


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


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
    data = await read_json(request, request.app.state.settings.max_body_bytes)
    job_request = build_request(data, tenant, idempotency_key)
    await request.app.state.webhooks.check(job_request)
    job, created = await _jobs(request).submit(job_request)
    if not created:
        response.status_code = 200
    return job


@router.get("/{job_id}", response_model=JobView, responses=_ERRORS, summary="A job's status")
async def get_job(job_id: str, request: Request, tenant: str = Depends(tenant_of)) -> JobView:
    return await _jobs(request).get(job_id, tenant)


@router.post("/{job_id}/cancel", response_model=JobView, responses=_ERRORS, summary="Cancel a job",
             description="202 when this call published the cancel; 200 when it was cancelled or finished already.")
async def cancel_job(job_id: str, request: Request, response: Response, tenant: str = Depends(tenant_of)) -> JobView:
    job, published = await _jobs(request).cancel(job_id, tenant)
    response.status_code = 202 if published else 200
    return job


@router.get("/{job_id}/events", responses=_ERRORS, response_class=StreamingResponse,
            summary="The job's events as server-sent events, resumable with Last-Event-ID")
async def job_events(
    job_id: str,
    request: Request,
    tenant: str = Depends(tenant_of),
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    last_event_id: str | None = Query(default=None),
) -> StreamingResponse:
    after = _cursor(last_event_id_header, last_event_id)
    follow = await follow_job(request, job_id, tenant, after=after, cancels=False)
    return StreamingResponse(
        sse.stream(follow),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/{job_id}/ws")
async def job_websocket(websocket: WebSocket, job_id: str, api_key: str | None = None,
                        last_event_id: str | None = None) -> None:
    """Frames ``{"id", "type", "event"}``; send ``{"type": "cancel"}`` to cancel the job."""
    state = websocket.app.state
    await websocket.accept()
    try:
        tenant = authenticate(state.api_keys, websocket.headers.get("authorization"), api_key)
        after = _cursor(websocket.headers.get("last-event-id"), last_event_id)
        follow = await follow_job(websocket, job_id, tenant, after=after, cancels=False)
    except ApiError as err:
        close = {ErrorCode.UNAUTHORIZED: WS_UNAUTHORIZED, ErrorCode.NOT_FOUND: WS_NOT_FOUND}.get(err.code, WS_BAD_CURSOR)
        await websocket.send_text(err.body().model_dump_json())
        await websocket.close(code=close)
        return
    lock = asyncio.Lock()
    writer = asyncio.create_task(_write(websocket, follow, lock))
    listener = asyncio.create_task(_listen(websocket, state.jobs, job_id, tenant, lock))
    # the client leaving ends the listener, which stops the reading at once (the job goes on)
    await asyncio.wait({writer, listener}, return_when=asyncio.FIRST_COMPLETED)
    for task in (writer, listener):
        task.cancel()
    await asyncio.gather(writer, listener, return_exceptions=True)


async def _write(websocket: WebSocket, follow: JobFollow, lock: asyncio.Lock) -> None:
    try:
        async for entry in follow:
            if entry is None:
                continue
            text = '{"id":%d,"type":%s,"event":%s}' % (entry.id, json.dumps(entry.type), entry.data.decode())
            async with lock:
                await websocket.send_text(text)
        async with lock:
            await websocket.close(code=1000)
    except ReplayExpired as exc:
        err = ApiError(ErrorCode.REPLAY_EXPIRED, str(exc))
        async with lock:
            await websocket.send_text(err.body().model_dump_json())
            await websocket.close(code=WS_REPLAY_EXPIRED)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client closed mid-send


async def _listen(websocket: WebSocket, jobs: JobService, job_id: str, tenant: str, lock: asyncio.Lock) -> None:
    """Read client frames until it disconnects; a cancel frame cancels the job."""
    while True:
        try:
            message = await websocket.receive_json()
        except (WebSocketDisconnect, RuntimeError):
            return
        except (ValueError, KeyError):  # not JSON, or a binary frame
            message = None
        if isinstance(message, dict) and message.get("type") == "cancel":
            try:
                job, published = await jobs.cancel(job_id, tenant, message.get("reason"))
                reply = {"type": "cancel_ack", "published": published, "job": job.model_dump(mode="json")}
            except ApiError as err:
                reply = err.body().model_dump(mode="json")
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
