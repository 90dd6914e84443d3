"""`POST /v1/images/generations`, as OpenAI serves it: the request waits for its image job's end.

An image request is an image job like any other (admitted, queued, batched by shape, moderated);
the answer holds its PNGs in index order, inline (`b64_json`) or as artifact URLs that the same
API key can fetch. A client that leaves before the end cancels the job.
"""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from schemas.openai import ImageData, ImageGenerationRequest, ImagesResponse

from ..artifacts import key_of, read_artifact
from ..auth import tenant_of
from ..body import SESSION_HEADER, parse_body, read_json
from ..follow import follow_job, openai_failure, result_of
from .media import to_image_request

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/images/generations", summary="Generate images (OpenAI-compatible)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": ImageGenerationRequest.model_json_schema()}}}},
             responses={200: {"model": ImagesResponse}})
async def generate_images(request: Request, tenant: str = Depends(tenant_of)) -> JSONResponse:
    state = request.app.state
    body = parse_body(ImageGenerationRequest, await read_json(request, state.settings.max_body_bytes),
                      "an image generation request")
    job = to_image_request(body, tenant=tenant, job_id=request.headers.get("Idempotency-Key"),
                           session=request.headers.get(SESSION_HEADER),
                           model=state.media.image)
    await state.jobs.submit(job)
    outcome = await result_of(await follow_job(request, job.job_id, tenant), openai_failure)
    data: list[ImageData] = []
    for artifact in outcome.artifacts:
        if body.response_format == "b64_json":
            png = await read_artifact(request, artifact.uri, tenant, job.job_id)
            data.append(ImageData(b64_json=base64.b64encode(png).decode()))
        else:
            key = key_of(artifact.uri, tenant, job.job_id)
            data.append(ImageData(url=str(request.url_for("get_artifact", key=key))))
    answer = ImagesResponse(created=int(time.time()), data=data)
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True), headers={"X-Genloom-Job-Id": job.job_id})
