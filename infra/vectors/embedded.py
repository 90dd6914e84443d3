"""The embedded vector index: a partition per (tenant, user) in files under one folder.

Scoping is structural: a query loads and searches one partition, so one user's vectors can never be
scored for another, whatever the filter code does. Each partition is
  `<folder>/<hash of tenant>/<hash of user>.npz`          the snapshot (arrays, see partition.py),
  `<folder>/<hash of tenant>/<hash of user>.log`          every write since the snapshot, appended,
  `<folder>/<hash of tenant>/<hash of user>.<gen>.hnsw`   the HNSW graph of a large partition.
A write batch (upsert, delete, a sweep's deletions) is appended to the log and fsynced before the
call returns, so it survives a crash; a torn last entry is ignored on load. The snapshot is rewritten
(to a temporary file, then renamed) when the log outgrows it, when the partition leaves the LRU of
open partitions, and on close; replaying a log over a snapshot that already holds it changes nothing,
so a crash between the rename and the log's removal is harmless. Graph files are named by the
snapshot's generation, so a snapshot never loads a graph of another state (it rebuilds instead).

Names are hashed: tenant and user ids are arbitrary strings, and a file name must not carry them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import struct
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from .base import VectorHit, VectorRecord
from .partition import EXACT_MAX, Partition, normalised

T = TypeVar("T")

#: the folder's own description; an index of other dims refuses to open it
_META = "index.json"
#: length prefix of a log entry (little-endian uint64)
_ENTRY = struct.Struct("<Q")
#: a log is folded into the snapshot once it is this large, or half the snapshot's size if that is more
_LOG_MIN_BYTES = 1 << 20
#: partitions this small are searched on the event loop: the scan costs less than a thread hop
_INLINE_MAX = 2_000


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Files:
    """The files of one partition, named by its stem (`<folder>/<tenant hash>/<user hash>`)."""

    def __init__(self, stem: Path) -> None:
        self.stem = stem
        self.snapshot = stem.with_suffix(".npz")
        self.log = stem.with_suffix(".log")

    def graph(self, gen: int) -> Path:
        return self.stem.with_name(f"{self.stem.name}.{gen}.hnsw")

    def graphs(self) -> list[Path]:
        return sorted(self.stem.parent.glob(f"{self.stem.name}.*.hnsw"))

    def exists(self) -> bool:
        return self.snapshot.exists() or self.log.exists()

    def remove(self) -> None:
        for path in (self.snapshot, self.log, *self.graphs()):
            path.unlink(missing_ok=True)


class _Open:
    """An open partition and what its files hold."""

    def __init__(self, files: _Files, part: Partition, gen: int, snapshot_bytes: int, log_bytes: int) -> None:
        self.files, self.part, self.gen = files, part, gen
        self.snapshot_bytes, self.log_bytes = snapshot_bytes, log_bytes


def _encode(op: str, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, op=np.array(op), **arrays)
    body = buf.getvalue()
    return _ENTRY.pack(len(body)) + body


def _upsert_entry(records: list[VectorRecord], dims: int) -> bytes:
    return _encode(
        "upsert",
        ids=np.array([r.id for r in records], dtype=str),
        vectors=np.stack([normalised(r.vector, dims) for r in records]),
        kinds=np.array([r.kind for r in records], dtype=str),
        created=np.array([r.created_at for r in records], dtype=np.float64),
        expires=np.array([np.inf if r.expires_at is None else r.expires_at for r in records], dtype=np.float64),
    )


def _replay(part: Partition, data: bytes) -> int:
    """Apply the log's entries; returns how many bytes were whole entries (a torn tail is dropped)."""
    at = 0
    while at + _ENTRY.size <= len(data):
        (size,) = _ENTRY.unpack_from(data, at)
        end = at + _ENTRY.size + size
        if end > len(data):
            break
        try:
            entry = np.load(io.BytesIO(data[at + _ENTRY.size:end]), allow_pickle=False)
            op = str(entry["op"])
        except (ValueError, OSError, KeyError):
            break
        if op == "upsert":
            part.upsert([VectorRecord(str(i), v, str(k), float(c), None if np.isinf(e) else float(e))
                         for i, v, k, c, e in zip(entry["ids"], entry["vectors"], entry["kinds"], entry["created"],
                                                  entry["expires"], strict=True)])
        elif op == "delete":
            part.delete([str(i) for i in entry["ids"]])
        at = end
    return at


class EmbeddedVectorIndex:
    """The VectorIndex contract on local files; one process owns a folder."""

    def __init__(self, root: Path, dims: int, max_open: int = 256, build_threads: int = 1,
                 exact_max: int = EXACT_MAX) -> None:
        self.root = Path(root)
        self.dims = dims
        self.max_open = max_open  # partitions kept in memory; the least recently used are closed past it
        self.build_threads = build_threads  # threads of an HNSW build (the streams process keeps 1)
        self.exact_max = exact_max  # partitions up to this size are scanned exactly (partition.py)
        self._open: OrderedDict[Path, _Open] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()
        #: loads in flight, by partition: a load outlives a caller that stops waiting (see `_entry`)
        self._loading: dict[Path, asyncio.Future[_Open | None]] = {}
        self._started = False

    # ---- lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self._check_folder)
        self._started = True

    def _check_folder(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / _META
        if meta.exists():
            stored = json.loads(meta.read_text())
            if stored.get("dims") != self.dims:
                raise ValueError(f"the vector index in {self.root} holds {stored.get('dims')}-dim vectors, not "
                                 f"{self.dims}: point GENLOOM_MEMORY_VECTOR_PATH elsewhere or re-embed")
        else:
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps({"dims": self.dims, "format": 1}))
            os.replace(tmp, meta)

    async def close(self) -> None:
        await asyncio.gather(*self._loading.values(), return_exceptions=True)  # what they load is kept, then closed
        while self._open:
            stem, entry = self._open.popitem(last=False)
            async with self._lock(stem):
                await asyncio.to_thread(self._compact, entry)
        self._started = False

    async def health(self) -> bool:
        return self._started and self.root.is_dir()

    # ---- the contract

    async def upsert(self, tenant: str, user: str, records: list[VectorRecord]) -> None:
        if not records:
            return
        entry = _upsert_entry(records, self.dims)  # validates every vector before anything is written

        def write(o: _Open) -> None:
            self._append(o, entry)
            o.part.upsert(records)
            self._compact_if_due(o)
        await self._on(self._stem(tenant, user), write, create=True, threaded=True)

    async def query(self, tenant: str, user: str, vector: np.ndarray, k: int,
                    kinds: tuple[str, ...] | None = None) -> list[VectorHit]:
        normalised(vector, self.dims)  # a wrong query is an error even for an empty partition
        stem = self._stem(tenant, user)
        return await self._on(stem, lambda o: o.part.query(vector, k, kinds), default=[],
                              threaded=self._is_large(stem))

    async def delete(self, tenant: str, user: str, ids: list[str]) -> int:
        return await self._on(self._stem(tenant, user), lambda o: self._delete(o, ids), default=0, threaded=True)

    async def erase(self, tenant: str, user: str) -> int:
        stem = self._stem(tenant, user)

        def erase(o: _Open) -> int:
            n = len(o.part)
            o.files.remove()
            o.part, o.gen, o.snapshot_bytes, o.log_bytes = self._empty(), 0, 0, 0
            return n
        return await self._on(stem, erase, default=0, threaded=True)

    async def sweep(self, now: float) -> int:
        total = 0
        for stem in await asyncio.to_thread(self._stems_to_sweep, now, set(self._open)):
            total += await self._on(stem, lambda o: self._delete(o, o.part.expired(now)), default=0, threaded=True)
        return total

    async def count(self, tenant: str, user: str) -> int:
        return await self._on(self._stem(tenant, user), lambda o: len(o.part), default=0,
                              threaded=False)

    # ---- partitions: locks, the LRU of open ones, loading

    def _stem(self, tenant: str, user: str) -> Path:
        return self.root / _digest(tenant) / _digest(user)

    def _lock(self, stem: Path) -> asyncio.Lock:
        lock = self._locks.get(stem)
        if lock is None:
            lock = self._locks[stem] = asyncio.Lock()
        return lock

    def _is_large(self, stem: Path) -> bool:
        entry = self._open.get(stem)
        return entry is None or len(entry.part) > _INLINE_MAX

    async def _on(self, stem: Path, fn: Callable[[_Open], T], *, default: T | None = None, create: bool = False,
                  threaded: bool) -> T:
        """Run `fn` on the partition under its lock, loading it first; `default` when it does not exist."""
        if not self._started:
            raise RuntimeError("EmbeddedVectorIndex used before start()")
        lock = self._lock(stem)
        async with lock:
            entry = await self._entry(stem, create)
            if entry is None:
                return default
            self._open.move_to_end(stem)
            result = await asyncio.to_thread(fn, entry) if threaded else fn(entry)
        await self._evict()
        return result

    async def _entry(self, stem: Path, create: bool) -> _Open | None:
        """The open partition, loaded first if need be (None: it does not exist and `create` is false).

        The load runs as a task of its own that keeps what it loaded: a caller that stops waiting (a
        job past enrichment's time budget is cancelled) leaves it to finish, and the next caller finds
        the partition open or joins the same load. Awaited in place, a load longer than the budget
        (a large partition on a busy machine) was thrown away by every caller and started again by
        the next, so the partition never opened and every job went on without memory."""
        entry = self._open.get(stem)
        if entry is not None:
            return entry
        load = self._loading.get(stem)
        if load is None:
            load = self._loading[stem] = asyncio.ensure_future(self._load_and_keep(stem, create))
        entry = await asyncio.shield(load)
        if entry is None and create:  # a load for a read found nothing; this caller writes
            entry = await self._load_and_keep(stem, True)
        return entry

    async def _load_and_keep(self, stem: Path, create: bool) -> _Open | None:
        try:
            entry = await asyncio.to_thread(self._load, stem, create)
        finally:
            self._loading.pop(stem, None)
        if entry is not None:
            self._open[stem] = entry
        return entry

    async def _evict(self) -> None:
        """Close the least recently used partitions past `max_open` (skipping any in use: never wait here)."""
        for stem in list(self._open):
            if len(self._open) <= self.max_open:
                return
            lock = self._lock(stem)
            if lock.locked():
                continue
            async with lock:
                entry = self._open.pop(stem, None)
                if entry is not None:
                    await asyncio.to_thread(self._compact, entry)

    def _load(self, stem: Path, create: bool) -> _Open | None:
        files = _Files(stem)
        if not files.exists():
            if not create:
                return None
            stem.parent.mkdir(parents=True, exist_ok=True)
            return _Open(files, self._empty(), 0, 0, 0)
        gen, snapshot_bytes = 0, 0
        part = self._empty()
        if files.snapshot.exists():
            with np.load(files.snapshot, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            gen, snapshot_bytes = int(arrays.pop("gen")), files.snapshot.stat().st_size
            part = Partition.from_arrays(self.dims, arrays, self.build_threads, self.exact_max,
                                         self._load_graph(files, gen, arrays))
        log_bytes = 0
        if files.log.exists():
            data = files.log.read_bytes()
            log_bytes = _replay(part, data)
            if log_bytes < len(data):  # a torn last write: cut it so later appends follow a whole entry
                with open(files.log, "r+b") as f:
                    f.truncate(log_bytes)
        return _Open(files, part, gen, snapshot_bytes, log_bytes)

    def _load_graph(self, files: _Files, gen: int, arrays: dict[str, np.ndarray]):
        path = files.graph(gen)
        if int(arrays["live"].sum()) <= self.exact_max or not path.exists():
            return None
        import hnswlib

        graph = hnswlib.Index(space="ip", dim=self.dims)
        graph.load_index(str(path), max_elements=max(len(arrays["live"]), 1))
        graph.set_num_threads(1)
        return graph

    def _empty(self) -> Partition:
        return Partition(self.dims, self.build_threads, self.exact_max)

    # ---- writes to files (all on worker threads, under the partition's lock)

    def _append(self, o: _Open, entry: bytes) -> None:
        new = not o.files.log.exists()
        with open(o.files.log, "ab") as f:
            f.write(entry)
            f.flush()
            os.fsync(f.fileno())
        if new:  # the file's name must be durable too, not only its bytes
            _fsync_dir(o.files.stem.parent)
        o.log_bytes += len(entry)

    def _delete(self, o: _Open, ids: list[str]) -> int:
        present = [i for i in dict.fromkeys(ids) if i in o.part.slot_of]
        if not present:
            return 0
        self._append(o, _encode("delete", ids=np.array(present, dtype=str)))
        n = o.part.delete(present)
        self._compact_if_due(o)
        return n

    def _compact_if_due(self, o: _Open) -> None:
        if o.log_bytes > max(_LOG_MIN_BYTES, o.snapshot_bytes // 2):
            self._compact(o)

    def _compact(self, o: _Open) -> None:
        """Fold the log into a new snapshot (and graph); nothing to do when the log is empty."""
        if o.log_bytes == 0 or not o.files.log.exists():
            return
        gen = o.gen + 1
        if o.part.graph is not None:
            tmp = o.files.graph(gen).with_suffix(".tmp")
            o.part.graph.save_index(str(tmp))
            os.replace(tmp, o.files.graph(gen))
        tmp = o.files.snapshot.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, gen=np.array(gen), **o.part.arrays())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, o.files.snapshot)
        _fsync_dir(o.files.stem.parent)
        o.files.log.unlink()
        for old in o.files.graphs():
            if old != o.files.graph(gen):
                old.unlink(missing_ok=True)
        o.gen, o.snapshot_bytes, o.log_bytes = gen, o.files.snapshot.stat().st_size, 0

    # ---- the sweep's short list

    def _stems_to_sweep(self, now: float, stems: set[Path]) -> list[Path]:
        """Partitions that may hold expired vectors: open ones, ones with a log, ones whose snapshot says so."""
        for path in self.root.glob("*/*.log"):
            stems.add(path.with_suffix(""))
        for path in self.root.glob("*/*.npz"):
            stem = path.with_suffix("")
            if stem in stems:
                continue
            with np.load(path, allow_pickle=False) as z:  # reads just these two arrays of the file
                if np.any(z["live"] & (z["expires"] <= now)):
                    stems.add(stem)
        return sorted(stems)
