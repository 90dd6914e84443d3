"""`POST /v1/audio/speech`, as OpenAI serves it: the whole file, or speech events per sentence.

With `stream_format: "sse"` each sentence's audio is sent as soon as the worker has spoken it
(`speech.audio.delta`, base64 of raw s16le mono PCM), then `speech.audio.done`; a failure before
the first sentence is an HTTP error with its code. Closing the stream cancels the job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from schemas.openai import SpeechCreateRequest

from ..auth import tenant_of
from ..body import read_json
from ..replay import Entry
from .bodies import parse_body
from .media import speech_delta, speech_done, sse_error, to_speech_request
from .outcome import cancel_later, events_of, failure, next_event, read_artifact, wait_for_result

router = APIRouter(prefix="/v1", tags=["openai"])

_AUDIO = frozenset({"audio"})


@router.post("/audio/speech", summary="Text to speech (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": SpeechCreateRequest.model_json_schema()}}}},
             responses={200: {"content": {"audio/wav": {}, "audio/pcm": {}, "text/event-stream": {}}}})
async def create_speech(request: Request, tenant: str = Depends(tenant_of)):
    state = request.app.state
    body = parse_body(SpeechCreateRequest, await read_json(request, state.settings.max_body_bytes),
                      "a speech request")
    job = to_speech_request(body, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
                            model=state.media.speech)
    await state.jobs.submit(job)
    headers = {"X-Genloom-Job-Id": job.job_id}
    if body.stream_format == "sse":
        events = await events_of(request, job.job_id, tenant)
        try:
            first = await next_event(events, request, job.job_id, tenant, _AUDIO)
            if first is not None and first.type in ("failed", "cancelled"):
                raise failure(first)
        except BaseException:
            await events.aclose()
            raise
        return StreamingResponse(_stream(request, events, first, job.job_id, tenant), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})
    outcome = await wait_for_result(request, job.job_id, tenant)
    artifact = outcome.in_order()[0]
    audio = await read_artifact(request, artifact, tenant, job.job_id)
    return Response(audio, media_type=artifact["mime_type"], headers=headers)


async def _stream(request: Request, events, first: Entry | None, job_id: str, tenant: str) -> AsyncIterator[bytes]:
    finished = False
    seconds = 0.0
    sample_rate = None
    next_index = 0
    entry = first
    try:
        while True:
            if entry is None:
                entry = await next_event(events, request, job_id, tenant, _AUDIO)
                if entry is None:  # the client left; next_event cancelled the job
                    finished = True
                    return
            data = json.loads(entry.data)
            if entry.type == "audio":
                # a worker that took the job over speaks it again from the first sentence
                if data["index"] < next_index:
                    entry = None
                    continue
                next_index = data["index"] + 1
                seconds += data["duration_s"]
                sample_rate = data["sample_rate"]
                yield speech_delta(data["data"])
            elif entry.type == "completed":
                finished = True
                yield speech_done(sample_rate, seconds)
                return
            else:
                finished = True
                err = failure(entry)
                yield sse_error(err.code.value, err.message)
                return
            entry = None
    finally:
        await events.aclose()
        if not finished:  # the client went away mid-stream: stop speaking for nobody
            cancel_later(request, job_id, tenant, "client disconnected")
