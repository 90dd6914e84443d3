"""A blob store on S3 (or any S3-compatible service), over a caller-supplied client.

The client is anything with boto3's ``put_object``/``get_object``/``head_object``/
``delete_object`` (a ``boto3.client("s3")`` works); its blocking calls run in a thread.
The sha256 travels as object metadata and is checked on every read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from infra.blob.base import (
    BlobHealth,
    BlobNotFound,
    BlobRef,
    BlobStore,
    sha256_hex,
    validate_key,
    verify,
)

#: Object metadata field holding the content's sha256 (sent as x-amz-meta-sha256).
SHA256_META = "sha256"
#: Key probed by ``health``; a 404 proves the bucket answers.
HEALTH_PROBE_KEY = ".genloom-health-probe"
#: Error codes S3 uses for a missing key (GetObject says NoSuchKey, HeadObject a bare 404).
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Client(Protocol):
    def put_object(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def get_object(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def head_object(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def delete_object(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def list_objects_v2(self, **kwargs: Any) -> Mapping[str, Any]: ...


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None)  # botocore's ClientError carries the parsed reply
    if not isinstance(response, Mapping):
        return False
    return str(response.get("Error", {}).get("Code")) in NOT_FOUND_CODES


class S3BlobStore(BlobStore):
    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _object_key(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _ref(self, key: str, size: int, sha: str, mime: str) -> BlobRef:
        uri = f"s3://{self._bucket}/{self._object_key(key)}"
        return BlobRef(uri=uri, key=key, bytes=size, sha256=sha, mime=mime)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def health(self) -> BlobHealth:
        try:
            await asyncio.to_thread(
                self._client.head_object, Bucket=self._bucket, Key=self._prefix + HEALTH_PROBE_KEY
            )
        except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
            if _is_not_found(exc):
                return BlobHealth(ok=True, detail=f"s3://{self._bucket} reachable")
            return BlobHealth(ok=False, detail=f"s3://{self._bucket}: {exc}")
        return BlobHealth(ok=True, detail=f"s3://{self._bucket} reachable")

    async def put(self, key: str, data: bytes, content_type: str) -> BlobRef:
        sha = sha256_hex(data)
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self._bucket,
            Key=self._object_key(key),
            Body=data,
            ContentType=content_type,
            Metadata={SHA256_META: sha},
        )
        return self._ref(key, len(data), sha, content_type)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    def _get(self, key: str) -> bytes:
        try:
            resp = self._client.get_object(Bucket=self._bucket, Key=self._object_key(key))
        except Exception as exc:
            if _is_not_found(exc):
                raise BlobNotFound(f"no blob {key!r}") from exc
            raise
        body = resp["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        verify(key, data, str(resp.get("Metadata", {}).get(SHA256_META, "")))
        return data

    async def stat(self, key: str) -> BlobRef:
        try:
            resp = await asyncio.to_thread(
                self._client.head_object, Bucket=self._bucket, Key=self._object_key(key)
            )
        except Exception as exc:
            if _is_not_found(exc):
                raise BlobNotFound(f"no blob {key!r}") from exc
            raise
        return self._ref(
            key,
            int(resp["ContentLength"]),
            str(resp.get("Metadata", {}).get(SHA256_META, "")),
            str(resp.get("ContentType", "application/octet-stream")),
        )

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=self._object_key(key))

    async def expire(self, prefix: str, older_than: float) -> int:
        return await asyncio.to_thread(self._expire, prefix, older_than)

    def _expire(self, prefix: str, older_than: float) -> int:
        """By the objects' LastModified, a page of listing at a time. (A bucket lifecycle rule on the
        prefix does the same without this process; this works on any S3-compatible service.)"""
        listed = {"Bucket": self._bucket, "Prefix": self._object_key(prefix) + "/"}
        deleted = 0
        while True:
            page = self._client.list_objects_v2(**listed)
            for obj in page.get("Contents", ()):
                if obj["LastModified"].timestamp() < older_than:
                    self._client.delete_object(Bucket=self._bucket, Key=obj["Key"])
                    deleted += 1
            if not page.get("IsTruncated"):
                return deleted
            listed["ContinuationToken"] = page["NextContinuationToken"]
