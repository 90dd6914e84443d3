"""`POST /v1/chat/completions` and `POST /v1/completions` (streamed and not) and `GET /v1/models`, as
OpenAI serves them. A legacy completion is a text job whose prompt is continued as it is, without the
chat template (`params.raw`).

A completion is a text job per choice (`n`): admitted together, queued and generated like any other
job, its events read from the same replay log. Closing a streamed completion cancels its job, so the worker stops
generating within one decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from infra.redis.jobstore import Entry
from schemas import TextRequest
from schemas.enums import ErrorCode, EventType
from schemas.events import Cancelled, Completed, Failed, TokenDelta, Usage
from schemas.openai import ChatCompletion, ChatCompletionRequest, CompletionRequest, ModelCard, ModelList, TextCompletion

from ..auth import tenant_of
from ..body import SESSION_HEADER, check_content_type, parse_json, read_bounded
from ..follow import DISCONNECTED, JobFollow, follow_job, gone, openai_failure
from .translate import (
    AttemptDiverged,
    ChunkWriter,
    TextAssembler,
    TextCompletionWriter,
    choice_requests,
    completion_to_text_request,
    merge_choices,
    merged_usage,
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


#: why the other choices of an `n` > 1 request are cancelled when one of them cannot be admitted
_SIBLING_REFUSED = "another choice of its request was refused"


async def serve_text(request: Request, tenant: str, validate, writer_for):
    """Submit the text jobs `validate` makes of the body (one per choice, `n`) and answer with
    `writer_for`'s objects, streamed or whole."""
    state = request.app.state
    check_content_type(request.headers.get("content-type"))
    raw = await read_bounded(request, state.settings.max_body_bytes)
    await state.text_models.ensure_loaded()
    # parsing, validating and tokenising a body of up to max_body_bytes is CPU work: off the loop
    body, job_request = await state.offload.run(
        tenant, validate, raw, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
        session=request.headers.get(SESSION_HEADER),
        catalog=state.text_models, chars_per_token=state.settings.prompt_chars_per_token)
    jobs = choice_requests(job_request, body.n or 1)
    await state.jobs.submit_all(jobs, _SIBLING_REFUSED)
    job_ids = [job.job_id for job in jobs]
    first_writer = writer_for(job_ids[0], body)
    writers = [first_writer] + [_for_choice(first_writer, i) for i in range(1, len(jobs))]
    follows: list[JobFollow] = []
    try:
        for job_id in job_ids:
            follows.append(await follow_job(request, job_id, tenant))
        firsts: list[Entry | None] = []
        for follow in follows:  # the jobs run side by side; this waits for the slowest to start
            first = await follow.next_of(_STARTED if body.stream else _TOKEN)
            if first is not None and isinstance(first.event, Failed):  # before it started: an HTTP error
                raise openai_failure(first.event)
            firsts.append(first)
    except BaseException:
        for follow in follows:
            await follow.aclose()
        for job_id in job_ids[len(follows):]:  # admitted but never followed: nobody will read them
            with contextlib.suppress(Exception):
                await state.jobs.cancel(job_id, tenant, DISCONNECTED)
        raise
    headers = {"X-Genloom-Job-Id": job_ids[0]}
    if len(job_ids) > 1:
        headers["X-Genloom-Job-Ids"] = ",".join(job_ids)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(follows, firsts, writers, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})
    answer = await _collect(follows, firsts, writers, bool(getattr(body, "logprobs", None)))
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


def _for_choice(writer: ChunkWriter, index: int) -> ChunkWriter:
    """`writer` for choice `index`: the same id, model and creation time, its own index."""
    other = copy.copy(writer)
    other.index = index
    return other


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


#: chunks of a stream's choices waiting for a slow client; a full queue holds their readers back
_STREAM_QUEUE = 64


@dataclass
class _End:
    """How one choice of a stream ended: its usage, or the error chunk that ends the whole stream, or
    `gone` (the client left), or the exception its reader raised."""

    usage: Usage | None = None
    error: bytes | None = None
    gone: bool = False
    exc: BaseException | None = None


async def _stream(follows: list[JobFollow], firsts: list[Entry | None], writers: list[ChunkWriter],
                  include_usage: bool) -> AsyncIterator[bytes]:
    """The stream of every choice, interleaved as their tokens come; one usage chunk (when asked) and
    one `[DONE]` after the last choice finished. A choice that fails ends the stream with its error."""
    queue: asyncio.Queue[bytes | _End] = asyncio.Queue(_STREAM_QUEUE)
    readers = [asyncio.create_task(_choice(follow, first, writer, queue))
               for follow, first, writer in zip(follows, firsts, writers)]
    usages: list[Usage] = []
    try:
        for writer in writers:
            head = writer.role()
            if head:
                yield head
        while len(usages) < len(readers):
            item = await queue.get()
            if isinstance(item, bytes):
                yield item
                continue
            if item.exc is not None:
                raise item.exc
            if item.gone:
                return
            if item.error is not None:
                yield item.error
                yield writers[0].done()
                return
            usages.append(item.usage)
        if include_usage:
            yield writers[0].usage(usages[0] if len(usages) == 1 else merged_usage(usages))
        yield writers[0].done()
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for follow in follows:
            await follow.aclose()  # before the end, this cancels the job: nobody reads its tokens


async def _choice(follow: JobFollow, first: Entry | None, writer: ChunkWriter, queue: asyncio.Queue) -> None:
    """Put one choice's chunks on `queue`, then how it ended."""
    text = TextAssembler()
    try:
        async for entry in _rest(follow, first):
            event = entry.event if entry is not None else None
            match event:
                case None:
                    await queue.put(b": keep-alive\n\n")
                case TokenDelta():
                    try:
                        delta = text.add(event.attempt, event.text, event.logprobs)
                    except AttemptDiverged as exc:
                        follow.stop("stream diverged after a worker takeover")
                        await queue.put(_End(error=writer.error(ErrorCode.GENERATION_ERROR, str(exc))))
                        return
                    if delta:  # logprobs go with the text they describe (not with text re-sent after a takeover)
                        await queue.put(writer.content(delta, event.logprobs if delta == event.text else None))
                case Completed():
                    if event.tool_calls:
                        await queue.put(writer.tool_calls(event.tool_calls))
                    await queue.put(writer.finish(event.finish_reason))
                    await queue.put(_End(usage=event.usage))
                    return
                case Failed():
                    await queue.put(_End(error=writer.error(event.code, event.message)))
                    return
                case Cancelled():
                    await queue.put(_End(error=writer.error(
                        ErrorCode.CANCELLED, f"the job was cancelled: {event.reason or 'on request'}")))
                    return
        await queue.put(_End(gone=True))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the stream fails as it would have with one choice read inline
        await queue.put(_End(exc=exc))


async def _collect(follows: list[JobFollow], firsts: list[Entry | None], writers: list[ChunkWriter],
                   body_logprobs: bool = False):
    """The whole answer: every choice read side by side; the first choice that fails is the error."""
    readers = [asyncio.create_task(_collect_one(follow, first, writer, body_logprobs))
               for follow, first, writer in zip(follows, firsts, writers)]
    try:
        done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_EXCEPTION)
        for reader in readers:
            if reader in done and reader.exception() is not None:
                raise reader.exception()
        answers = [reader.result() for reader in readers]
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for follow in follows:
            await follow.aclose()
    return answers[0] if len(answers) == 1 else merge_choices(answers)


async def _collect_one(follow: JobFollow, first: Entry | None, writer: ChunkWriter, body_logprobs: bool):
    text = TextAssembler()
    async for entry in _rest(follow, first):
        event = entry.event if entry is not None else None
        match event:
            case TokenDelta():
                try:
                    text.add(event.attempt, event.text, event.logprobs)
                except AttemptDiverged:
                    pass  # the completed event carries the final attempt's whole text
            case Completed():
                return writer.final(event.text or text.sent, event.finish_reason, event.usage,
                                    text.logprobs if body_logprobs else None, event.tool_calls)
            case Failed() | Cancelled():
                raise openai_failure(event)
    raise gone()  # the client left; the job was cancelled
