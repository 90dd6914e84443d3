"""Blob stores under test: local always, S3 through an in-memory stand-in for its client, and
real S3 over boto3: s3rver (an S3-protocol server for Node) started once per session on a free
loopback port, or the service at ``GENLOOM_S3_ENDPOINT`` (bucket ``GENLOOM_S3_BUCKET``) when set.

``infra/scripts/bootstrap.sh`` installs s3rver into ``.tools/``. Without node or s3rver the real-S3
cases fail in CI (``CI=true``) and are skipped, with the reason, on a workstation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import pytest

from infra.blob import BlobStore, LocalBlobStore, S3BlobStore
from infra.procs import free_port, stop_process, wait_for_port

#: where bootstrap.sh installs s3rver (`npm install --prefix .tools s3rver@3.7.1`)
S3RVER_JS = Path(__file__).resolve().parents[4] / ".tools" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
#: s3rver checks request signatures against this one fixed key pair
S3RVER_ENV = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_DEFAULT_REGION": "us-east-1"}
#: bucket the real-S3 cases use when GENLOOM_S3_BUCKET does not name one; each test writes under its own prefix
DEFAULT_BUCKET = "genloom-test"
#: seconds s3rver gets to listen (node starts in about one; two busy cores can make it several)
S3RVER_START_TIMEOUT_S = 30.0


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
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


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

    def list_objects_v2(self, *, Bucket: str, Prefix: str = "", ContinuationToken: str | None = None) -> dict[str, Any]:
        """Pages of two keys, so paging is exercised; the token is the last key listed, as S3's resumes after it."""
        keys = sorted(k for b, k in self.objects if b == Bucket and k.startswith(Prefix) and k > (ContinuationToken or ""))
        page = [{"Key": k, "LastModified": self.objects[(Bucket, k)].modified, "Size": len(self.objects[(Bucket, k)].body)}
                for k in keys[:2]]
        more = len(keys) > 2
        return {"Contents": page, "IsTruncated": more, **({"NextContinuationToken": keys[1]} if more else {})}


Corrupt = Callable[[str], None]


@dataclass(frozen=True)
class S3Service:
    """A reachable S3 endpoint whose bucket exists."""

    url: str
    bucket: str
    #: AWS_* variables boto3 needs for it; empty for an external endpoint (boto3's own chain applies)
    aws_env: Mapping[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.aws_env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.aws_env.get("AWS_SECRET_ACCESS_KEY"),
            region_name=self.aws_env.get("AWS_DEFAULT_REGION"),
            config=Config(s3={"addressing_style": "path"}),
        )


def _unavailable(reason: str) -> NoReturn:
    """A CI run without its S3 server is misconfigured; a workstation may simply lack node."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"real-S3 blob tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def _ensure_bucket(client: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = client.meta.region_name
    if region in (None, "us-east-1"):  # us-east-1 rejects an explicit LocationConstraint
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def _s3rver_command(data_dir: Path, port: int) -> list[str]:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH: install Node.js 20 and run infra/scripts/bootstrap.sh,"
                     " or set GENLOOM_S3_ENDPOINT to an S3-compatible service")
    if not S3RVER_JS.is_file():
        _unavailable(f"s3rver is not installed at {S3RVER_JS}: run infra/scripts/bootstrap.sh,"
                     " or set GENLOOM_S3_ENDPOINT to an S3-compatible service")
    return [node, str(S3RVER_JS), "--directory", str(data_dir), "--address", "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    """The external endpoint when GENLOOM_S3_ENDPOINT is set, else a throwaway s3rver stopped by PID."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        _unavailable("boto3 is not installed: pip install -e '.[dev]'")
    external = os.environ.get("GENLOOM_S3_ENDPOINT")
    if external:
        service = S3Service(external, os.environ.get("GENLOOM_S3_BUCKET", DEFAULT_BUCKET))
        _ensure_bucket(service.client(), service.bucket)
        yield service
        return
    root = tmp_path_factory.mktemp("s3rver")
    (root / "data").mkdir()
    port = free_port()
    command = _s3rver_command(root / "data", port)
    log_path = root / "s3rver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        try:
            wait_for_port(port, S3RVER_START_TIMEOUT_S, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"s3rver did not start ({exc}); its log:\n{log_path.read_text()[-4000:]}") from exc
        service = S3Service(f"http://127.0.0.1:{port}", DEFAULT_BUCKET, S3RVER_ENV)
        _ensure_bucket(service.client(), service.bucket)
        yield service
    finally:
        stop_process(proc)


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
            service: S3Service = request.getfixturevalue("s3_service")
            client, bucket = service.client(), service.bucket
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
