"""Artifact storage: one async ``BlobStore`` interface, a local-disk and an S3 adapter."""

from infra.blob.base import (
    BlobError,
    BlobHealth,
    BlobIntegrityError,
    BlobNotFound,
    BlobRef,
    BlobStore,
    InvalidBlobKey,
    artifact_key,
)
from infra.blob.local import LocalBlobStore
from infra.blob.s3 import S3BlobStore, S3Client

__all__ = [
    "BlobError",
    "BlobHealth",
    "BlobIntegrityError",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "InvalidBlobKey",
    "LocalBlobStore",
    "S3BlobStore",
    "S3Client",
    "artifact_key",
]
