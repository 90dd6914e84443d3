from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.blob import BlobNotFound, InvalidBlobKey, LocalBlobStore, artifact_key


def test_artifact_key_is_addressed_by_tenant_and_job() -> None:
    assert artifact_key("acme", "0b5e-77", "video.mp4") == "artifacts/acme/0b5e-77/video.mp4"


@pytest.mark.parametrize("parts", [("a/b", "j", "n"), ("t", "..", "n"), ("t", "j", ""), ("t", "j", "x/y.png")])
def test_artifact_key_rejects_parts_that_are_not_one_segment(parts: tuple[str, str, str]) -> None:
    with pytest.raises(InvalidBlobKey):
        artifact_key(*parts)


async def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.start()
    ref = await store.put("x/y.bin", b"abc", "application/octet-stream")
    assert ref.uri == (tmp_path / "objects" / "x" / "y.bin").as_uri()
    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["y.bin", "y.bin.json"]


async def test_local_symlink_out_of_root_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalBlobStore(tmp_path / "root")
    await store.start()
    os.symlink(outside, tmp_path / "root" / "objects" / "escape")
    with pytest.raises(InvalidBlobKey, match="outside"):
        await store.put("escape/file", b"x", "text/plain")
    assert not any(outside.iterdir())


async def test_local_blob_without_metadata_does_not_exist(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.start()
    (tmp_path / "objects" / "half").write_bytes(b"written, never committed")
    assert not await store.exists("half")
    with pytest.raises(BlobNotFound):
        await store.get("half")


async def test_local_health_reports_missing_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "never-started")
    assert not (await store.health()).ok


async def test_every_contract_id_can_name_an_artifact(tmp_path: Path) -> None:
    # tenant and job ids may hold ':' and '@' (schemas.requests.ID_PATTERN): an image job submitted with
    # `Idempotency-Key: img:1` was generated, then failed storing its PNG (a 500 after the work was done)
    key = artifact_key("team@acme", "img:1", "image-0.png")
    assert key == "artifacts/team@acme/img:1/image-0.png"
    store = LocalBlobStore(tmp_path)
    await store.start()
    await store.put(key, b"png", "image/png")
    assert await store.get(key) == b"png"
