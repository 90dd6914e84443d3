"""GET /v1/artifacts/{key}: a stored artifact, only for the tenant that owns it.

Keys are the blob store's ``artifacts/<tenant>/<job_id>/<name>``; the tenant segment decides
ownership, and another tenant's key answers 404 exactly like a missing one.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from infra.blob import BlobNotFound, InvalidBlobKey
from infra.blob.base import ARTIFACT_PREFIX, artifact_key
from schemas.enums import ErrorCode

from .auth import tenant_of
from .errors import ApiError, not_found

router = APIRouter()


def owner_of(key: str) -> str | None:
    """The tenant an artifact key belongs to, or None for keys outside the artifacts folder."""
    parts = key.split("/")
    return parts[1] if len(parts) >= 4 and parts[0] == ARTIFACT_PREFIX else None


def key_of(uri: str, tenant: str, job_id: str) -> str:
    """The blob key of a job's artifact from the URI its event carries (file://... or s3://...)."""
    return artifact_key(tenant, job_id, uri.rsplit("/", 1)[-1])


async def read_artifact(request: Request, uri: str, tenant: str, job_id: str) -> bytes:
    """A job's artifact, whole; 404 when the blob store no longer has it."""
    key = key_of(uri, tenant, job_id)
    try:
        return await request.app.state.blobs.get(key)
    except BlobNotFound:
        raise ApiError(ErrorCode.NOT_FOUND, f"the artifact {key!r} of job {job_id} is no longer stored") from None


@router.get("/v1/artifacts/{key:path}", response_class=StreamingResponse, summary="Download an artifact")
async def get_artifact(key: str, request: Request, tenant: str = Depends(tenant_of)) -> StreamingResponse:
    if owner_of(key) != tenant:
        raise not_found("artifact", key)
    store = request.app.state.blobs
    try:
        ref = await store.stat(key)
        data = await store.get(key)  # checks the recorded sha256
    except (BlobNotFound, InvalidBlobKey):
        raise not_found("artifact", key) from None
    return StreamingResponse(
        iter((data,)), media_type=ref.mime,
        headers={"Content-Length": str(ref.bytes), "ETag": f'"{ref.sha256}"'},
    )
