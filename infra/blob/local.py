"""A blob store on the local filesystem.

Layout under ``root``: ``objects/<key>`` holds the bytes and ``meta/<key>.json`` the
recorded size, sha256 and MIME type. Both are written to a temp file, fsynced and renamed
into place; the metadata goes last, so a blob exists only once it is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path

from infra.blob.base import (
    BlobHealth,
    BlobNotFound,
    BlobRef,
    BlobStore,
    InvalidBlobKey,
    sha256_hex,
    validate_key,
    verify,
)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root).expanduser().absolute()
        self._objects = self._root / "objects"
        self._meta = self._root / "meta"

    def _paths(self, key: str) -> tuple[Path, Path]:
        validate_key(key)
        obj = self._objects / key
        # Defence in depth: a symlink inside the root must not lead outside it.
        if not obj.resolve().is_relative_to(self._objects.resolve()):
            raise InvalidBlobKey(f"blob key {key!r} resolves outside the store")
        return obj, self._meta / f"{key}.json"

    def _ref(self, key: str, obj: Path, size: int, sha: str, mime: str) -> BlobRef:
        return BlobRef(uri=obj.as_uri(), key=key, bytes=size, sha256=sha, mime=mime)

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self._objects.mkdir(parents=True, exist_ok=True)
        self._meta.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    async def health(self) -> BlobHealth:
        ok = self._objects.is_dir() and os.access(self._objects, os.W_OK)
        return BlobHealth(ok=ok, detail=f"{self._root} {'writable' if ok else 'missing or read-only'}")

    async def put(self, key: str, data: bytes, content_type: str) -> BlobRef:
        return await asyncio.to_thread(self._put, key, data, content_type)

    def _put(self, key: str, data: bytes, content_type: str) -> BlobRef:
        obj, meta = self._paths(key)
        sha = sha256_hex(data)
        _atomic_write(obj, data)
        record = {"bytes": len(data), "sha256": sha, "mime": content_type}
        _atomic_write(meta, json.dumps(record).encode())
        return self._ref(key, obj, len(data), sha, content_type)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    def _get(self, key: str) -> bytes:
        obj, _ = self._paths(key)
        ref = self._stat(key)
        try:
            data = obj.read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(f"blob {key!r} has metadata but no content") from exc
        verify(key, data, ref.sha256)
        return data

    async def stat(self, key: str) -> BlobRef:
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> BlobRef:
        obj, meta = self._paths(key)
        try:
            record = json.loads(meta.read_bytes())
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {key!r}") from exc
        return self._ref(key, obj, int(record["bytes"]), str(record["sha256"]), str(record["mime"]))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    def _delete(self, key: str) -> None:
        obj, meta = self._paths(key)
        meta.unlink(missing_ok=True)  # first: the blob stops existing before its bytes go
        obj.unlink(missing_ok=True)

    async def expire(self, prefix: str, older_than: float) -> int:
        return await asyncio.to_thread(self._expire, prefix, older_than)

    def _expire(self, prefix: str, older_than: float) -> int:
        """By the metadata file's modification time (written last by `put`); emptied folders go too."""
        top = self._meta / validate_key(prefix)
        deleted = 0
        for folder, _, names in os.walk(top, topdown=False):
            for name in names:
                meta = Path(folder) / name
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    if meta.stat().st_mtime >= older_than:
                        continue
                except FileNotFoundError:  # deleted meanwhile
                    continue
                self._delete(meta.relative_to(self._meta).as_posix()[: -len(".json")])
                deleted += 1
            for root in (self._meta, self._objects):  # folders of jobs whose every blob went
                with contextlib.suppress(OSError):
                    (root / Path(folder).relative_to(self._meta)).rmdir()
        return deleted
