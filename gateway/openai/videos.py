"""OpenAI's asynchronous video API over video jobs: create, poll, download, cancel.

`POST /v1/videos` queues a video job and answers at once; `GET /v1/videos/{id}` reports its status
and progress (denoising steps done) from the job record; `GET /v1/videos/{id}/content` is the MP4
once it is completed; `DELETE /v1/videos/{id}` cancels it (idempotently) and answers the object.
The body is JSON or the multipart form fields the OpenAI SDK sends.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from infra.redis.jobrecord import JobRecord
from schemas.api import ErrorBody
from schemas.enums import ErrorCode, JobStatus, Modality
from schemas.openai import VideoCreateRequest, VideoObject

from ..artifacts import read_artifact
from ..auth import tenant_of
from ..body import SESSION_HEADER, parse_body, read_json_or_form
from ..errors import ApiError, not_found
from .media import to_video_request, video_meta, video_object

router = APIRouter(prefix="/v1/videos", tags=["openai"])

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 409, 413, 415, 429, 503)}


async def _video(request: Request, video_id: str, tenant: str) -> VideoObject:
    record = await request.app.state.jobs.require(video_id, tenant)
    return _object(request, video_id, record)


def _object(request: Request, video_id: str, record: JobRecord) -> VideoObject:
    if record.modality != Modality.VIDEO:
        raise not_found("video", video_id)
    return video_object(record.view(video_id), record.video_meta, request.app.state.media.video.name,
                        record.finished_at)


def _answer(video: VideoObject, status_code: int = 200) -> JSONResponse:
    return JSONResponse(video.model_dump(mode="json"), status_code=status_code)


@router.post("", response_model=VideoObject, responses=_ERRORS, summary="Create a video (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": VideoCreateRequest.model_json_schema()},
                 "multipart/form-data": {"schema": VideoCreateRequest.model_json_schema()}}}})
async def create_video(request: Request, tenant: str = Depends(tenant_of)) -> JSONResponse:
    state = request.app.state
    body = parse_body(VideoCreateRequest, await read_json_or_form(request, state.settings.max_body_bytes),
                      "a video request")
    job = to_video_request(body, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
                           session=request.headers.get(SESSION_HEADER),
                           model=state.media.video)
    await state.jobs.submit(job)
    # kept beside the record (and expiring with it) so that any gateway can answer GET /v1/videos/{id}
    await state.jobs.keep_video_meta(job.job_id, tenant, video_meta(job, state.media.video))
    return _answer(await _video(request, job.job_id, tenant))


@router.get("/{video_id}", response_model=VideoObject, responses=_ERRORS, summary="A video's status")
async def get_video(video_id: str, request: Request, tenant: str = Depends(tenant_of)) -> JSONResponse:
    return _answer(await _video(request, video_id, tenant))


@router.get("/{video_id}/content", responses={**_ERRORS, 200: {"content": {"video/mp4": {}}}},
            summary="Download a completed video's MP4")
async def get_video_content(video_id: str, request: Request, tenant: str = Depends(tenant_of),
                            variant: str = Query(default="video")) -> Response:
    if variant != "video":
        raise ApiError(ErrorCode.UNSUPPORTED_FORMAT, f"variant {variant!r} is not served: only `video` (the MP4)",
                       param="variant")
    record = await request.app.state.jobs.require(video_id, tenant)
    video = _object(request, video_id, record)
    if video.status in ("failed", "cancelled"):
        raise ApiError(ErrorCode.NOT_FOUND, f"video {video_id} is {video.status}: it has no content")
    job = record.view(video_id)
    if job.status != JobStatus.COMPLETED or not job.result or not job.result.artifacts:
        message = (f"video {video_id} is {video.status} ({video.progress}%): poll GET /v1/videos/{video_id}"
                   " until its status is completed")
        raise ApiError(ErrorCode.NOT_READY, message)
    artifact = job.result.artifacts[0]
    data = await read_artifact(request, artifact.uri, tenant, video_id)
    return Response(data, media_type=artifact.mime_type)


@router.delete("/{video_id}", response_model=VideoObject, responses=_ERRORS,
               summary="Cancel a video job (idempotent)")
async def delete_video(video_id: str, request: Request, tenant: str = Depends(tenant_of)) -> JSONResponse:
    state = request.app.state
    record = await state.jobs.require(video_id, tenant)
    _object(request, video_id, record)  # a job of another modality is not a video
    await state.jobs.cancel(video_id, tenant, "cancelled with DELETE /v1/videos")
    return _answer(await _video(request, video_id, tenant))
