"""GET /v1/artifacts/{key}: a stored artifact, only for the tenant that owns it.

The blob store keeps a job's artifacts under ``artifacts/<tenant>/<internal job id>/<name>`` (the
worker knows the job by its internal id, scoped by tenant). What a tenant is shown and downloads is
``artifacts/<tenant>/<its job id>/<name>``: the tenant segment decides ownership (another tenant's
key answers 404 exactly like a missing one), and the job segment is scoped by that tenant again,
so a key only ever reaches the tenant's own job.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from infra.blob import BlobNotFound, InvalidBlobKey
from infra.blob.base import ARTIFACT_PREFIX, artifact_key
from infra.redis.jobstore import Entry
from schemas.api import JobView
from schemas.enums import ErrorCode, EventType
from schemas.requests import scoped_job_id

from .auth import tenant_of
from .errors import ApiError, not_found

router = APIRouter()


def owner_of(key: str) -> str | None:
    """The tenant an artifact key belongs to, or None for keys outside the artifacts folder."""
    parts = key.split("/")
    return parts[1] if len(parts) >= 4 and parts[0] == ARTIFACT_PREFIX else None


def key_of(uri: str, tenant: str, job_id: str) -> str:
    """The key the tenant is shown for its job's artifact, from the URI an event carries (file://...,
    s3://... or a download path): named by the tenant's job id."""
    return artifact_key(tenant, job_id, uri.rsplit("/", 1)[-1])


def stored_key(key: str) -> str:
    """Where the blob store keeps the artifact a shown key names (InvalidBlobKey when it names none)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != ARTIFACT_PREFIX:
        raise InvalidBlobKey(f"{key!r} is not an artifact key")
    _, tenant, job_id, name = parts
    artifact_key(tenant, job_id, name)  # each shown segment is valid too
    return artifact_key(tenant, scoped_job_id(tenant, job_id), name)


def public_uri(uri: str, tenant: str, job_id: str) -> str:
    """What an API answer shows of an artifact: its download path, never where the server keeps it
    (a file:// path or bucket); `key_of` reads it back like the stored URI."""
    try:
        return f"/v1/artifacts/{key_of(uri, tenant, job_id)}"
    except InvalidBlobKey:
        return f"/v1/artifacts/{ARTIFACT_PREFIX}/{tenant}/{job_id}/{uri.rsplit('/', 1)[-1]}"


def public_view(view: JobView, tenant: str) -> JobView:
    """The job as answered to its tenant: artifact URIs as download paths."""
    if view.result is None or not view.result.artifacts:
        return view
    artifacts = [a.model_copy(update={"uri": public_uri(a.uri, tenant, view.id)}) for a in view.result.artifacts]
    return view.model_copy(update={"result": view.result.model_copy(update={"artifacts": artifacts})})


def public_entry(entry: Entry, tenant: str, job_id: str) -> Entry:
    """An `artifact` replay entry with its URI as a download path (other entries as they are)."""
    if entry.type != EventType.ARTIFACT:
        return entry
    data = json.loads(entry.data)
    data["uri"] = public_uri(str(data.get("uri", "")), tenant, job_id)
    return Entry(entry.id, entry.type, json.dumps(data, separators=(",", ":")).encode())


async def read_artifact(request: Request, uri: str, tenant: str, job_id: str) -> bytes:
    """A job's artifact, whole; 404 when the blob store no longer has it."""
    key = key_of(uri, tenant, job_id)
    try:
        return await request.app.state.blobs.get(stored_key(key))
    except BlobNotFound:
        raise ApiError(ErrorCode.NOT_FOUND, f"the artifact {key!r} of job {job_id} is no longer stored") from None


async def released(request: Request, stored: str) -> bool:
    """Whether the job's record lists the artifact: only an `artifact` event that passed moderation
    puts it there, so a file the gate is still checking, or blocked, is never served, even to a
    client that guesses its name."""
    _, _, job_id, name = stored.split("/")
    record = await request.app.state.jobs.store.load(job_id)
    return record is not None and any(a.uri.rsplit("/", 1)[-1] == name for a in record.artifacts)


@router.get("/v1/artifacts/{key:path}", response_class=StreamingResponse, summary="Download an artifact")
async def get_artifact(key: str, request: Request, tenant: str = Depends(tenant_of)) -> StreamingResponse:
    if owner_of(key) != tenant:
        raise not_found("artifact", key)
    store = request.app.state.blobs
    try:
        stored = stored_key(key)
        if not await released(request, stored):
            raise BlobNotFound(stored)
        ref = await store.stat(stored)
        data = await store.get(stored)  # checks the recorded sha256
    except (BlobNotFound, InvalidBlobKey):
        raise not_found("artifact", key) from None
    return StreamingResponse(
        iter((data,)), media_type=ref.mime,
        headers={"Content-Length": str(ref.bytes), "ETag": f'"{ref.sha256}"'},
    )
