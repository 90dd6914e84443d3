"""`POST /v1/chat/completions` (streamed and not) and `GET /v1/models`, as OpenAI serves them.

A completion is a text job: it is admitted, queued and generated like any other, and its events
come from the same replay log. Closing a streamed completion cancels its job, so the worker stops
generating within one decode step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from schemas.enums import ErrorCode
from schemas.openai import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList

from ..auth import tenant_of
from ..body import read_json
from ..errors import ApiError
from ..replay import Entry
from .outcome import cancel_later, events_of, failure, next_event
from .translate import AttemptDiverged, ChunkWriter, TextAssembler, completion, parse_chat_body, to_text_request

router = APIRouter(prefix="/v1", tags=["openai"])

#: the event that shows how a completion goes, besides a terminal one
_TOKEN = frozenset({"token"})
#: a stream answers 200 once a worker has started the job (it passed the worker's checks), so the
#: headers and the role chunk are on the wire while the prompt is prefilled and the first token
#: costs one chunk; a job that fails before it starts is an HTTP error with its code
_STARTED = frozenset({"started", "token"})


@router.get("/models", response_model=ModelList, summary="Models served (OpenAI-compatible)")
async def list_models(request: Request, tenant: str = Depends(tenant_of)) -> ModelList:
    catalog = request.app.state.text_models
    return ModelList(data=[ModelCard(id=e.name, created=e.created) for e in catalog.entries()])


@router.post("/chat/completions", summary="Chat completion (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": ChatCompletionRequest.model_json_schema()}}}},
             responses={200: {"model": ChatCompletion}})
async def chat_completions(request: Request, tenant: str = Depends(tenant_of)):
    state = request.app.state
    body = parse_chat_body(await read_json(request, state.settings.max_body_bytes))
    job_request = to_text_request(body, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
                                  catalog=state.text_models)
    await state.jobs.submit(job_request)
    job_id = job_request.job_id
    events = await events_of(request, job_id, tenant)
    writer = ChunkWriter(f"chatcmpl-{job_id}", body.model)
    try:
        first = await next_event(events, request, job_id, tenant, _STARTED if body.stream else _TOKEN)
    except BaseException:
        await events.aclose()
        raise
    if first is not None and first.type == "failed":  # before it started: an HTTP error with its code
        await events.aclose()
        raise failure(first)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(request, events, first, writer, job_id, tenant, include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                          "X-Genloom-Job-Id": job_id})
    return await _collect(request, events, first, writer, job_id, tenant)


async def _stream(request: Request, events, first: Entry | None, writer: ChunkWriter, job_id: str, tenant: str,
                  include_usage: bool) -> AsyncIterator[bytes]:
    finished = False
    text = TextAssembler()
    try:
        yield writer.role()
        entry = first
        while entry is not None or not finished:
            if entry is None:
                entry = await anext(events, None)
                if entry is None and not finished:
                    yield b": keep-alive\n\n"
                    continue
            data = json.loads(entry.data)
            if entry.type == "token":
                try:
                    delta = text.add(data["attempt"], data["text"])
                except AttemptDiverged as exc:
                    finished = True
                    cancel_later(request, job_id, tenant, "stream diverged after a worker takeover")
                    yield writer.error(ErrorCode.GENERATION_ERROR.value, str(exc))
                    yield writer.done()
                    return
                if delta:
                    yield writer.content(delta)
            elif entry.type == "completed":
                finished = True
                yield writer.finish(data["finish_reason"])
                if include_usage:
                    yield writer.usage(data["usage"])
                yield writer.done()
                return
            elif entry.type == "failed":
                finished = True
                yield writer.error(data["code"], data["message"])
                yield writer.done()
                return
            elif entry.type == "cancelled":
                finished = True
                yield writer.error("cancelled", f"the job was cancelled: {data.get('reason') or 'on request'}")
                yield writer.done()
                return
            entry = None
    finally:
        await events.aclose()
        if not finished:  # the client went away mid-stream: stop generating for nobody
            cancel_later(request, job_id, tenant, "client disconnected")


async def _collect(request: Request, events, first: Entry | None, writer: ChunkWriter, job_id: str,
                   tenant: str) -> JSONResponse:
    text = TextAssembler()
    entry = first
    try:
        while True:
            if entry is None:
                entry = await next_event(events, request, job_id, tenant, _TOKEN)
                if entry is None:  # the client left; next_event cancelled the job
                    raise ApiError(ErrorCode.INVALID_REQUEST, "client disconnected")
            data = json.loads(entry.data)
            if entry.type == "token":
                try:
                    text.add(data["attempt"], data["text"])
                except AttemptDiverged:
                    pass  # the completed event carries the final attempt's whole text
            elif entry.type == "completed":
                result = completion(writer.id, writer.model, data.get("text") or text.sent,
                                    data["finish_reason"], data["usage"])
                return JSONResponse(result.model_dump(mode="json"), headers={"X-Genloom-Job-Id": job_id})
            elif entry.terminal:
                raise failure(entry)
            entry = None
    finally:
        await events.aclose()
