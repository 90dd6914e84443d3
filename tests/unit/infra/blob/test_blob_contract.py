"""The same cases against every BlobStore adapter (see conftest for which run where)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest

from infra.blob import BlobIntegrityError, BlobNotFound, BlobStore, InvalidBlobKey, artifact_key

Store = tuple[BlobStore, Callable[[str], None]]  # the store and a function that corrupts a key


async def test_put_get_round_trip_with_checksum(blob_store: Store) -> None:
    store, _ = blob_store
    data = b"\x89PNG fake bytes" * 100
    key = artifact_key("acme", "job-1", "image-0.png")
    ref = await store.put(key, data, "image/png")
    assert (ref.key, ref.bytes, ref.mime) == (key, len(data), "image/png")
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.uri.endswith(key) and ref.uri.split("://")[0] in ("file", "s3")
    assert await store.get(key) == data
    assert await store.stat(key) == ref
    assert b"".join([c async for c in store.stream(key, chunk_size=64)]) == data


async def test_put_replaces_existing_blob(blob_store: Store) -> None:
    store, _ = blob_store
    await store.put("a/b", b"one", "text/plain")
    ref = await store.put("a/b", b"two!", "text/plain")
    assert await store.get("a/b") == b"two!" and ref.bytes == 4


async def test_missing_exists_and_delete(blob_store: Store) -> None:
    store, _ = blob_store
    assert not await store.exists("nope/x")
    with pytest.raises(BlobNotFound):
        await store.get("nope/x")
    with pytest.raises(BlobNotFound):
        await store.stat("nope/x")
    await store.put("k/v", b"x", "application/octet-stream")
    assert await store.exists("k/v")
    await store.delete("k/v")
    assert not await store.exists("k/v")
    await store.delete("k/v")  # idempotent


async def test_corrupted_bytes_fail_the_checksum(blob_store: Store) -> None:
    store, corrupt = blob_store
    await store.put("c/d.bin", b"original", "application/octet-stream")
    corrupt("c/d.bin")
    with pytest.raises(BlobIntegrityError, match="sha256"):
        await store.get("c/d.bin")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", "a/./b", ".hidden", "a\\b", "a/b\x00", ""])
async def test_unsafe_keys_are_rejected(blob_store: Store, key: str) -> None:
    store, _ = blob_store
    with pytest.raises(InvalidBlobKey):
        await store.put(key, b"x", "text/plain")
    with pytest.raises(InvalidBlobKey):
        await store.get(key)


async def test_health_is_ok(blob_store: Store) -> None:
    store, _ = blob_store
    assert (await store.health()).ok


async def test_expire_deletes_only_blobs_under_the_prefix_written_before_the_cutoff(blob_store: Store) -> None:
    store, _ = blob_store
    before = time.time() - 5  # S3 keeps LastModified to the second
    old = [artifact_key("acme", f"job-{i}", "image-0.png") for i in range(3)]
    for key in old:
        await store.put(key, b"old", "image/png")
    await store.put("elsewhere/keep", b"not an artifact", "text/plain")
    assert await store.expire("artifacts", older_than=before) == 0
    assert all([await store.exists(key) for key in old])
    assert await store.expire("artifacts", older_than=time.time() + 5) == 3
    assert not any([await store.exists(key) for key in old])
    assert await store.get("elsewhere/keep") == b"not an artifact"
    assert await store.expire("artifacts", older_than=time.time() + 5) == 0
    ref = await store.put(old[0], b"written again", "image/png")  # an emptied folder is no obstacle
    assert await store.stat(old[0]) == ref
