"""Pure translation between OpenAI's image, video and speech bodies and genloom jobs and events.

Every check a worker would fail a job for is made here first, against the served model's limits
(`MediaCatalog`), so a bad request is a 400 with a stable code and nothing is queued.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


from infra.models.catalog import DEFAULT_FPS, ImageModel, SpeechModel, VideoModel
from infra.models.voices import resolve_voice
from schemas import ImageRequest, SpeechRequest, VideoRequest
from schemas.api import JobView
from schemas.enums import ErrorCode, ImageScheduler, JobStatus
from schemas.openai import (
    ImageGenerationRequest,
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechCreateRequest,
    VideoCreateRequest,
    VideoError,
    VideoObject,
)
from schemas.requests import SIZE_FACTOR

from ..errors import ApiError
from ..body import build_job

#: the smallest side served: one latent cell
MIN_SIDE = SIZE_FACTOR
#: speech encodings the speech worker writes (workers.speech.formats.FORMATS)
SPEECH_FORMATS = ("wav", "pcm")
#: image encodings the image worker writes
IMAGE_FORMATS = ("png",)
#: OpenAI's video status for each job status
VIDEO_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def check_model(name: str | None, served: str, kind: str, aliases: frozenset[str] = frozenset()) -> str:
    """The served model for a requested name (unset, the served name, or one of its aliases)."""
    if name is not None and name != served and name not in aliases:
        also = f" (or {', '.join(sorted(aliases))})" if aliases else ""
        raise ApiError(ErrorCode.MODEL_NOT_FOUND,
                       f"{kind} model {name!r} is not served here: use {served!r}{also} or omit model", param="model")
    return served


def parse_size(value: str | None, max_side: int) -> tuple[int, int] | None:
    """`WIDTHxHEIGHT` as (width, height); None for unset or `auto` (the model's own size)."""
    if value is None or value.strip().lower() == "auto":
        return None
    match = _SIZE.match(value)
    if not match:
        raise ApiError(ErrorCode.INVALID_SIZE, f"size {value!r} is not WIDTHxHEIGHT: send e.g. 512x512",
                       param="size")
    width, height = int(match[1]), int(match[2])
    for side, pixels in (("width", width), ("height", height)):
        if not MIN_SIDE <= pixels <= max_side:
            raise ApiError(ErrorCode.INVALID_SIZE,
                           f"size {value}: {side} must be between {MIN_SIDE} and {max_side} pixels", param="size")
        if pixels % SIZE_FACTOR:
            lower = pixels - pixels % SIZE_FACTOR
            raise ApiError(ErrorCode.INVALID_SIZE,
                           f"size {value}: {side} {pixels} is not divisible by {SIZE_FACTOR}: use"
                           f" {lower or SIZE_FACTOR} or {lower + SIZE_FACTOR}", param="size")
    return width, height


def _in_range(name: str, value: int | None, most: int) -> None:
    if value is not None and not 1 <= value <= most:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"{name}={value}: must be between 1 and {most}", param=name)


def _not_blank(text: str, name: str) -> None:
    if not text.strip():
        raise ApiError(ErrorCode.EMPTY_INPUT, f"{name} is empty: send some text", param=name)


def _params(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def to_image_request(body: ImageGenerationRequest, *, tenant: str, job_id: str | None,
                     model: ImageModel, session: str | None = None) -> ImageRequest:
    name = check_model(body.model, model.name, "image")
    _not_blank(body.prompt, "prompt")
    size = parse_size(body.size, model.max_side)
    _in_range("n", body.n, model.max_n)
    _in_range("steps", body.steps, model.max_steps)
    if body.scheduler is not None and body.scheduler not in {s.value for s in ImageScheduler}:
        raise ApiError(ErrorCode.UNKNOWN_SCHEDULER,
                       f"scheduler {body.scheduler!r} is not supported: use one of"
                       f" {', '.join(s.value for s in ImageScheduler)}", param="scheduler")
    if body.output_format is not None and body.output_format not in IMAGE_FORMATS:
        raise ApiError(ErrorCode.UNSUPPORTED_FORMAT,
                       f"output_format {body.output_format!r} is not supported: use {', '.join(IMAGE_FORMATS)}",
                       param="output_format")
    width, height = size or (None, None)
    params = _params(prompt=body.prompt, negative_prompt=body.negative_prompt, width=width, height=height,
                     steps=body.steps, guidance=body.guidance, scheduler=body.scheduler, n=body.n, seed=body.seed)
    return build_job(ImageRequest, {"modality": "image", "model": name, "params": params}, tenant=tenant,
                     job_id=job_id, user=body.user, session=session)


def video_frames(body: VideoCreateRequest, model: VideoModel) -> tuple[int | None, int]:
    """(frames, fps): frames from `frames`, or from `seconds` x fps; None leaves the worker's default."""
    fps = body.fps if body.fps is not None else DEFAULT_FPS
    _in_range("fps", fps, model.max_fps)
    frames = body.frames
    if body.seconds is not None:
        if not math.isfinite(body.seconds) or body.seconds <= 0:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"seconds={body.seconds}: must be positive",
                           param="seconds")
        from_seconds = round(body.seconds * fps)
        if frames is not None and frames != from_seconds:
            raise ApiError(ErrorCode.INVALID_PARAMETER,
                           f"seconds={body.seconds} at fps={fps} is {from_seconds} frames, but frames={frames}:"
                           " send one of seconds and frames", param="seconds")
        if not 1 <= from_seconds <= model.max_frames:
            raise ApiError(ErrorCode.INVALID_PARAMETER,
                           f"seconds={body.seconds} at fps={fps} is {from_seconds} frames; the model makes 1 to"
                           f" {model.max_frames} (at most {model.max_frames / fps:g} s at this fps)",
                           param="seconds")
        frames = from_seconds
    _in_range("frames", frames, model.max_frames)
    return frames, fps


def to_video_request(body: VideoCreateRequest, *, tenant: str, job_id: str | None,
                     model: VideoModel, session: str | None = None) -> VideoRequest:
    name = check_model(body.model, model.name, "video")
    _not_blank(body.prompt, "prompt")
    size = parse_size(body.size, model.max_side)
    frames, fps = video_frames(body, model)
    _in_range("steps", body.steps, model.max_steps)
    width, height = size or (None, None)
    params = _params(prompt=body.prompt, negative_prompt=body.negative_prompt, frames=frames, fps=fps, width=width,
                     height=height, steps=body.steps, guidance=body.guidance, seed=body.seed)
    return build_job(VideoRequest, {"modality": "video", "model": name, "params": params}, tenant=tenant,
                     job_id=job_id, user=body.user, session=session)


def video_meta(request: VideoRequest, model: VideoModel) -> dict[str, str | None]:
    """What the video object shows before the MP4 exists (kept beside the job record)."""
    p = request.params
    frames = p.frames or model.frames
    return {"model": request.model or model.name,
            "size": f"{p.width}x{p.height}" if p.width and p.height else None,
            "seconds": f"{frames / p.fps:g}"}


def video_object(job: JobView, meta: dict[str, str | None] | None, default_model: str,
                 finished_at: float | None = None) -> VideoObject:
    """OpenAI's video object for a video job (its record, and the meta the gateway kept)."""
    meta = meta or {}
    status = VIDEO_STATUS[job.status]
    artifact = job.result.artifacts[0] if job.result and job.result.artifacts else None
    if job.status == JobStatus.COMPLETED:
        progress = 100
    elif job.progress is not None:  # the last step done is not the end: the MP4 is still encoding
        progress = min(99, job.progress.step * 100 // job.progress.total)
    else:
        progress = 0
    size = meta.get("size") or "auto"
    seconds = meta.get("seconds") or "0"
    if artifact is not None and artifact.width and artifact.height:
        size = f"{artifact.width}x{artifact.height}"
    if artifact is not None and artifact.duration_s is not None:
        seconds = f"{artifact.duration_s:g}"
    error = VideoError(code=job.error.code.value, message=job.error.message) if job.error else None
    return VideoObject(id=job.id, status=status, progress=progress, created_at=int(job.created_at or 0),
                       completed_at=int(finished_at) if finished_at else None,
                       model=meta.get("model") or job.model or default_model, size=size, seconds=seconds,
                       error=error)


def to_speech_request(body: SpeechCreateRequest, *, tenant: str, job_id: str | None,
                      model: SpeechModel, session: str | None = None) -> SpeechRequest:
    check_model(body.model, model.name, "speech", model.model_aliases)
    _not_blank(body.input, "input")
    voice = resolve_voice(body.voice, model.voices, model.aliases)
    if voice is None:
        raise ApiError(ErrorCode.UNKNOWN_VOICE,
                       f"voice {body.voice!r} is not installed: use one of {', '.join(sorted(model.voices))}"
                       f" or an OpenAI voice ({', '.join(sorted(model.aliases))})", param="voice")
    fmt = body.response_format or SPEECH_FORMATS[0]
    if fmt not in SPEECH_FORMATS:
        raise ApiError(ErrorCode.UNSUPPORTED_FORMAT,
                       f"response_format {fmt!r} is not supported: use one of {', '.join(SPEECH_FORMATS)}",
                       param="response_format")
    if body.speed is not None and not (math.isfinite(body.speed) and 0.25 <= body.speed <= 4.0):
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"speed={body.speed}: must be between 0.25 and 4.0",
                       param="speed")
    params = _params(input=body.input, voice=voice, format=fmt, speed=body.speed)
    return build_job(SpeechRequest, {"modality": "speech", "model": model.name, "params": params}, tenant=tenant,
                     job_id=job_id, user=body.user, session=session)


def speech_delta(pcm_b64: str) -> bytes:
    return _sse(SpeechAudioDelta(audio=pcm_b64).model_dump_json())


def speech_done(sample_rate: int | None, audio_seconds: float) -> bytes:
    return _sse(SpeechAudioDone(sample_rate=sample_rate, audio_seconds=round(audio_seconds, 3)).model_dump_json())


def sse_error(code: str, message: str) -> bytes:
    return _sse(json.dumps({"type": "error", "error": {"code": code, "message": message}}))


def _sse(data: str) -> bytes:
    return b"data: " + data.encode() + b"\n\n"
