"""Blob store selection from settings: a local folder by default, S3 when a bucket is named."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.redis import keys

from .base import BlobStore


class BlobSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_BLOB_", extra="ignore", frozen=True)

    dir: Path = Field(default=Path.home() / ".genloom" / "blobs", description="Local artifact folder.")
    s3_bucket: str | None = Field(default=None, description="S3 bucket; set to use S3 instead.")
    s3_endpoint: str | None = Field(default=None, description="S3-compatible endpoint URL.")
    ttl_s: int = Field(
        default=keys.JOB_TTL_S + 3600, ge=0,
        description="Job artifacts older than this are deleted by the streams process's reconciler (the job record's"
        " expiry plus an hour, so an artifact outlives the record that points at it); 0 keeps them forever.",
    )


def blob_store(settings: BlobSettings) -> BlobStore:
    if settings.s3_bucket:
        import boto3  # only needed for S3 deployments
        from botocore.config import Config

        from .s3 import S3BlobStore

        # S3-compatible services (MinIO, Ceph, s3rver) serve buckets by path, not by subdomain
        config = Config(s3={"addressing_style": "path"}) if settings.s3_endpoint else None
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint, config=config)
        return S3BlobStore(client, settings.s3_bucket)
    from .local import LocalBlobStore

    return LocalBlobStore(settings.dir)
