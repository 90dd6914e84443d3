"""Blob stores under test: local always, S3 through an in-memory stand-in for its client,
and real S3 when ``GENLOOM_S3_ENDPOINT`` (plus ``GENLOOM_S3_BUCKET``) is set.

S3 cannot run on these machines, so ``FakeS3Client`` reproduces the four calls and the
error shapes of ``boto3.client("s3")``; the same contract cases then run against a real
endpoint wherever one is configured.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.blob import BlobStore, LocalBlobStore, S3BlobStore


class FakeClientError(Exception):
    """Shaped like botocore's ClientError: the parsed error sits in ``response``."""

    def __init__(self, code: str, operation: str) -> None:
        super().__init__(f"An error occurred ({code}) when calling the {operation} operation")
        self.response = {"Error": {"Code": code}}


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data

    def close(self) -> None:
        return None


@dataclass
class FakeObject:
    body: bytes
    content_type: str
    metadata: dict[str, str]


class FakeS3Client:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], FakeObject] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str = "binary/octet-stream",
                   Metadata: dict[str, str] | None = None) -> dict[str, Any]:
        self.objects[(Bucket, Key)] = FakeObject(bytes(Body), ContentType, dict(Metadata or {}))
        return {"ETag": '"fake"'}

    def _find(self, bucket: str, key: str, missing_code: str, operation: str) -> FakeObject:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise FakeClientError(missing_code, operation) from None

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        obj = self._find(Bucket, Key, "NoSuchKey", "GetObject")
        return {"Body": FakeBody(obj.body), "ContentType": obj.content_type, "Metadata": obj.metadata,
                "ContentLength": len(obj.body)}

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        obj = self._find(Bucket, Key, "404", "HeadObject")
        return {"ContentType": obj.content_type, "Metadata": obj.metadata, "ContentLength": len(obj.body)}

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.objects.pop((Bucket, Key), None)
        return {}


Corrupt = Callable[[str], None]


def _real_s3_client() -> tuple[Any, str]:
    endpoint = os.environ.get("GENLOOM_S3_ENDPOINT")
    if not endpoint:
        pytest.skip("GENLOOM_S3_ENDPOINT is not set")
    boto3 = pytest.importorskip("boto3")
    bucket = os.environ.get("GENLOOM_S3_BUCKET", "genloom-test")
    return boto3.client("s3", endpoint_url=endpoint), bucket


def _s3_corrupter(client: Any, bucket: str, prefix: str) -> Corrupt:
    def corrupt(key: str) -> None:
        head = client.head_object(Bucket=bucket, Key=prefix + key)
        client.put_object(Bucket=bucket, Key=prefix + key, Body=b"tampered",
                          ContentType=head["ContentType"], Metadata=head["Metadata"])
    return corrupt


@pytest.fixture(params=["local", "s3-fake", "s3"])
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[BlobStore, Corrupt]]:
    store: BlobStore
    if request.param == "local":
        store = LocalBlobStore(tmp_path / "blobs")

        def corrupt(key: str) -> None:
            (tmp_path / "blobs" / "objects" / key).write_bytes(b"tampered")
    else:
        if request.param == "s3":
            client, bucket = _real_s3_client()
        else:
            client, bucket = FakeS3Client(), "genloom-test"
        prefix = f"test-{uuid.uuid4().hex}"
        store = S3BlobStore(client, bucket, prefix=prefix)
        corrupt = _s3_corrupter(client, bucket, prefix + "/")
    await store.start()
    try:
        yield store, corrupt
    finally:
        await store.stop()
