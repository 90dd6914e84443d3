from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

import pytest

from infra.blob import artifact_key
from infra.blob.config import BlobSettings, blob_store

if TYPE_CHECKING:
    from tests.unit.infra.blob.conftest import S3Service


async def test_settings_with_a_bucket_build_a_working_s3_store(
    s3_service: S3Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_service.aws_env.items():  # credentials reach boto3 the way a deployment's do
        monkeypatch.setenv(name, value)
    store = blob_store(BlobSettings(s3_bucket=s3_service.bucket, s3_endpoint=s3_service.url))
    await store.start()
    key = artifact_key("acme", f"job-{uuid.uuid4().hex}", "out.bin")
    data = bytes(range(256)) * 8
    try:
        ref = await store.put(key, data, "application/octet-stream")
        assert ref.uri == f"s3://{s3_service.bucket}/{key}"
        assert ref.sha256 == hashlib.sha256(data).hexdigest()
        assert await store.get(key) == data
        assert (await store.health()).ok
    finally:
        await store.delete(key)
        await store.stop()
    assert not await store.exists(key)
