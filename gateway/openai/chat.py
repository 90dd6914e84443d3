"""`POST /v1/chat/completions` and `POST /v1/completions` (streamed and not) and `GET /v1/models`, as
OpenAI serves them. A legacy completion is a text job whose prompt is continued as it is, without the
chat template (`params.raw`).

A completion is a text job: it is admitted, queued and generated like any other, and its events
come from the same replay log. Closing a streamed completion cancels its job, so the worker stops
generating within one decode step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from infra.redis.jobstore import Entry
from schemas import TextRequest
from schemas.enums import ErrorCode, EventType
from schemas.events import Cancelled, Completed, Failed, TokenDelta
from schemas.openai import ChatCompletion, ChatCompletionRequest, CompletionRequest, ModelCard, ModelList, TextCompletion

from ..auth import tenant_of
from ..body import SESSION_HEADER, check_content_type, parse_json, read_bounded
from ..follow import JobFollow, follow_job, gone, openai_failure
from .translate import (
    AttemptDiverged,
    ChunkWriter,
    TextAssembler,
    TextCompletionWriter,
    completion_to_text_request,
    parse_chat_body,
    parse_completion_body,
    prompt_text,
    to_text_request,
)

router = APIRouter(prefix="/v1", tags=["openai"])

#: the event that shows how a completion goes, besides a terminal one
_TOKEN = frozenset({EventType.TOKEN})
#: a stream answers 200 once a worker has started the job (it passed the worker's checks), so the
#: headers and the role chunk are on the wire while the prompt is prefilled and the first token
#: costs one chunk; a job that fails before it starts is an HTTP error with its code
_STARTED = frozenset({EventType.STARTED, EventType.TOKEN})


@router.get("/models", response_model=ModelList, summary="Models served (OpenAI-compatible)")
async def list_models(request: Request, tenant: str = Depends(tenant_of)) -> ModelList:
    catalog = request.app.state.text_models
    cards = [ModelCard(id=e.name, created=e.created) for e in catalog.entries()]
    embeddings = request.app.state.embeddings
    cards.append(ModelCard(id=embeddings.name, created=embeddings.created))  # served by /v1/embeddings
    return ModelList(data=cards)


@router.post("/chat/completions", summary="Chat completion (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": ChatCompletionRequest.model_json_schema()}}}},
             responses={200: {"model": ChatCompletion}})
async def chat_completions(request: Request, tenant: str = Depends(tenant_of)):
    return await serve_text(request, tenant, _validate,
                            lambda job_id, body: ChunkWriter(f"chatcmpl-{job_id}", body.model))


@router.post("/completions", summary="Text completion of a raw prompt (OpenAI-compatible, legacy)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": CompletionRequest.model_json_schema()}}}},
             responses={200: {"model": TextCompletion}})
async def completions(request: Request, tenant: str = Depends(tenant_of)):
    return await serve_text(request, tenant, _validate_completion, lambda job_id, body: TextCompletionWriter(
        f"cmpl-{job_id}", body.model, prompt_text(body) if body.echo else ""))


async def serve_text(request: Request, tenant: str, validate, writer_for):
    """Submit the text job `validate` makes of the body and answer with `writer_for`'s objects,
    streamed or whole."""
    state = request.app.state
    check_content_type(request.headers.get("content-type"))
    raw = await read_bounded(request, state.settings.max_body_bytes)
    await state.text_models.ensure_loaded()
    # parsing, validating and tokenising a body of up to max_body_bytes is CPU work: off the loop
    body, job_request = await state.offload.run(
        tenant, validate, raw, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
        session=request.headers.get(SESSION_HEADER),
        catalog=state.text_models, chars_per_token=state.settings.prompt_chars_per_token)
    await state.jobs.submit(job_request)
    job_id = job_request.job_id
    follow = await follow_job(request, job_id, tenant)
    writer = writer_for(job_id, body)
    try:
        first = await follow.next_of(_STARTED if body.stream else _TOKEN)
        if first is not None and isinstance(first.event, Failed):  # before it started: an HTTP error
            raise openai_failure(first.event)
    except BaseException:
        await follow.aclose()
        raise
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(follow, first, writer, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                          "X-Genloom-Job-Id": job_id})
    return await _collect(follow, first, writer, bool(getattr(body, "logprobs", None)))


def _validate(raw: bytes, **kwargs) -> tuple[ChatCompletionRequest, TextRequest]:
    body = parse_chat_body(parse_json(raw))
    return body, to_text_request(body, **kwargs)


def _validate_completion(raw: bytes, **kwargs) -> tuple[CompletionRequest, TextRequest]:
    body = parse_completion_body(parse_json(raw))
    return body, completion_to_text_request(body, **kwargs)


async def _rest(follow: JobFollow, first: Entry | None) -> AsyncIterator[Entry | None]:
    """`first`, then the job's later entries (None at each keep-alive interval)."""
    if first is not None:
        yield first
    async for entry in follow:
        yield entry


async def _stream(follow: JobFollow, first: Entry | None, writer: ChunkWriter,
                  include_usage: bool) -> AsyncIterator[bytes]:
    text = TextAssembler()
    try:
        head = writer.role()
        if head:
            yield head
        async for entry in _rest(follow, first):
            event = entry.event if entry is not None else None
            match event:
                case None:
                    yield b": keep-alive\n\n"
                case TokenDelta():
                    try:
                        delta = text.add(event.attempt, event.text, event.logprobs)
                    except AttemptDiverged as exc:
                        follow.stop("stream diverged after a worker takeover")
                        yield writer.error(ErrorCode.GENERATION_ERROR, str(exc))
                        yield writer.done()
                        return
                    if delta:  # logprobs go with the text they describe (not with text re-sent after a takeover)
                        yield writer.content(delta, event.logprobs if delta == event.text else None)
                case Completed():
                    if event.tool_calls:
                        yield writer.tool_calls(event.tool_calls)
                    yield writer.finish(event.finish_reason)
                    if include_usage:
                        yield writer.usage(event.usage)
                    yield writer.done()
                case Failed():
                    yield writer.error(event.code, event.message)
                    yield writer.done()
                case Cancelled():
                    yield writer.error(ErrorCode.CANCELLED, f"the job was cancelled: {event.reason or 'on request'}")
                    yield writer.done()
    finally:
        await follow.aclose()  # before the end, this cancels the job: nobody reads its tokens


async def _collect(follow: JobFollow, first: Entry | None, writer: ChunkWriter,
                   body_logprobs: bool = False) -> JSONResponse:
    text = TextAssembler()
    try:
        async for entry in _rest(follow, first):
            event = entry.event if entry is not None else None
            match event:
                case TokenDelta():
                    try:
                        text.add(event.attempt, event.text, event.logprobs)
                    except AttemptDiverged:
                        pass  # the completed event carries the final attempt's whole text
                case Completed():
                    result = writer.final(event.text or text.sent, event.finish_reason, event.usage,
                                          text.logprobs if body_logprobs else None, event.tool_calls)
                    return JSONResponse(result.model_dump(mode="json"), headers={"X-Genloom-Job-Id": follow.job_id})
                case Failed() | Cancelled():
                    raise openai_failure(event)
        raise gone()  # the client left; the job was cancelled
    finally:
        await follow.aclose()
