"""`POST /v1/audio/speech`, as OpenAI serves it: the whole file, or speech events per sentence.

With `stream_format: "sse"` each sentence's audio is sent as soon as the worker has spoken it
(`speech.audio.delta`, base64 of raw s16le mono PCM), then `speech.audio.done`; a failure before
the first sentence is an HTTP error with its code. Closing the stream cancels the job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from infra.redis.jobstore import Entry
from schemas.enums import EventType
from schemas.events import AudioChunk, Completed
from schemas.openai import SpeechCreateRequest

from ..artifacts import read_artifact
from ..auth import tenant_of
from ..body import SESSION_HEADER, parse_body, read_json
from ..follow import JobFollow, follow_job, openai_failure, result_of
from .media import speech_delta, speech_done, sse_error, to_speech_request

router = APIRouter(prefix="/v1", tags=["openai"])

_AUDIO = frozenset({EventType.AUDIO})


@router.post("/audio/speech", summary="Text to speech (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": SpeechCreateRequest.model_json_schema()}}}},
             responses={200: {"content": {"audio/wav": {}, "audio/pcm": {}, "text/event-stream": {}}}})
async def create_speech(request: Request, tenant: str = Depends(tenant_of)):
    state = request.app.state
    body = parse_body(SpeechCreateRequest, await read_json(request, state.settings.max_body_bytes),
                      "a speech request")
    job = to_speech_request(body, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
                           session=request.headers.get(SESSION_HEADER),
                            model=state.media.speech)
    await state.jobs.submit(job)
    headers = {"X-Genloom-Job-Id": job.job_id}
    follow = await follow_job(request, job.job_id, tenant)
    if body.stream_format == "sse":
        try:
            first = await follow.next_of(_AUDIO)
            if first is not None and first.terminal and not isinstance(first.event, Completed):
                raise openai_failure(first.event)
        except BaseException:
            await follow.aclose()
            raise
        return StreamingResponse(_stream(follow, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})
    outcome = await result_of(follow, openai_failure)
    artifact = outcome.artifacts[0]
    audio = await read_artifact(request, artifact.uri, tenant, job.job_id)
    return Response(audio, media_type=artifact.mime_type, headers=headers)


async def _stream(follow: JobFollow, first: Entry | None) -> AsyncIterator[bytes]:
    seconds = 0.0
    sample_rate = None
    next_index = 0
    entry = first
    try:
        while True:
            if entry is None:
                entry = await follow.next_of(_AUDIO)
                if entry is None:  # the client left; the job was cancelled
                    return
            event = entry.event
            if isinstance(event, AudioChunk):
                # a worker that took the job over speaks it again from the first sentence
                if event.index >= next_index:
                    next_index = event.index + 1
                    seconds += event.duration_s
                    sample_rate = event.sample_rate
                    yield speech_delta(event.data)
            elif isinstance(event, Completed):
                yield speech_done(sample_rate, seconds)
                return
            else:
                err = openai_failure(event)
                yield sse_error(err.code.value, err.message)
                return
            entry = None
    finally:
        await follow.aclose()  # before the end, this cancels the job: nobody listens to it
