"""The blob store interface, its key rules and errors.

Keys are ``/``-separated segments of ``[A-Za-z0-9._=:@-]`` that start with a letter or digit,
so no key can climb out of its root (``..``), be absolute, or clash with a store's own hidden
temp files (which start with a dot), and every tenant and job id of the contract is one segment.
Artifacts are addressed by job with ``artifact_key``. Every stored blob carries its sha256,
checked again on every read.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

#: Top-level folder of job artifacts.
ARTIFACT_PREFIX = "artifacts"
#: S3's own key limit, in bytes of UTF-8; our keys are ASCII.
MAX_KEY_LENGTH = 1024
#: Chunk size of ``BlobStore.stream``.
STREAM_CHUNK = 1 << 20

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=:@-]*")


class BlobError(Exception):
    code = "blob_error"


class InvalidBlobKey(BlobError, ValueError):
    code = "invalid_blob_key"


class BlobNotFound(BlobError, KeyError):
    code = "blob_not_found"

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "blob not found"


class BlobIntegrityError(BlobError):
    """The bytes read back do not match the sha256 recorded at write time."""

    code = "blob_corrupt"


@dataclass(frozen=True)
class BlobRef:
    uri: str  #: where the blob lives (file:// or s3://); events carry this
    key: str
    bytes: int  #: size
    sha256: str  #: hex digest of the content
    mime: str


@dataclass(frozen=True)
class BlobHealth:
    ok: bool
    detail: str


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidBlobKey(f"blob key must be 1-{MAX_KEY_LENGTH} characters, got {len(key)}")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidBlobKey(
                f"invalid blob key {key!r}: each '/'-separated part must start with a letter or "
                "digit and use only letters, digits, '.', '_', '=', ':', '@' or '-'"
            )
    return key


def artifact_key(tenant: str, job_id: str, name: str) -> str:
    """``artifacts/<tenant>/<job_id>/<name>``; each part must be a single valid segment."""
    for label, part in (("tenant", tenant), ("job_id", job_id), ("name", name)):
        if "/" in part or not _SEGMENT.fullmatch(part):
            raise InvalidBlobKey(f"invalid {label} {part!r} for an artifact key")
    return f"{ARTIFACT_PREFIX}/{tenant}/{job_id}/{name}"


def artifact_key_of(uri: str) -> str | None:
    """The blob key an artifact URI (file://..., s3://...) names: its last four path segments when
    they are ``artifacts/<tenant>/<job>/<name>``; None otherwise."""
    parts = uri.rstrip("/").split("/")[-4:]
    if len(parts) != 4 or parts[0] != ARTIFACT_PREFIX:
        return None
    try:
        return artifact_key(parts[1], parts[2], parts[3])
    except ValueError:
        return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(key: str, data: bytes, expected_sha256: str) -> None:
    if not expected_sha256:
        raise BlobIntegrityError(f"blob {key!r} has no recorded sha256; it was not written by genloom")
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise BlobIntegrityError(
            f"blob {key!r} is corrupt: sha256 {actual} does not match the recorded {expected_sha256}"
        )


class BlobStore(ABC):
    """Async artifact storage. ``start`` before use, ``stop`` after; no I/O at construction."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def health(self) -> BlobHealth: ...

    @abstractmethod
    async def put(self, key: str, data: bytes, content_type: str) -> BlobRef:
        """Store ``data`` under ``key`` (replacing any blob there) and return its reference."""

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """The blob's bytes; raises ``BlobNotFound`` or ``BlobIntegrityError``."""

    @abstractmethod
    async def stat(self, key: str) -> BlobRef:
        """The blob's reference without reading it; raises ``BlobNotFound``."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing key is not an error."""

    @abstractmethod
    async def expire(self, prefix: str, older_than: float) -> int:
        """Delete the blobs under the key prefix ``prefix`` (whole segments) written before the Unix
        time ``older_than``; how many were deleted."""

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except BlobNotFound:
            return False
        return True

    async def stream(self, key: str, chunk_size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
        """The blob in chunks, verified before the first chunk is yielded."""
        data = await self.get(key)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]
