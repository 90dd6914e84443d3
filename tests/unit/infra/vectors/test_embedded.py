"""What the embedded index promises beyond the contract: durable writes without close, a torn log,
its own folder's dims, the LRU of open partitions, and the HNSW graph's files."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from infra.vectors.base import VectorRecord
from infra.vectors.embedded import EmbeddedVectorIndex

from .conftest import DIMS, SMALL_EXACT_MAX
from .test_index_contract import records, unit


async def opened(root: Path, **kw) -> EmbeddedVectorIndex:
    index = EmbeddedVectorIndex(root, DIMS, **kw)
    await index.start()
    return index


def files(root: Path, suffix: str) -> list[Path]:
    return sorted(root.glob(f"*/*{suffix}"))


async def test_a_write_survives_a_crash_without_close(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    first = await opened(tmp_path)
    data = unit(rng, 30)
    await first.upsert("t", "u", records(data, "r"))
    await first.delete("t", "u", ["r3"])
    # no close(): the process died; a new one opens the same folder
    second = await opened(tmp_path)
    assert await second.count("t", "u") == 29
    assert (await second.query("t", "u", data[7], 1))[0].id == "r7"
    await second.close()


async def test_a_torn_last_log_entry_is_dropped(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    first = await opened(tmp_path)
    await first.upsert("t", "u", records(unit(rng, 5), "r"))
    [log] = files(tmp_path, ".log")
    whole = log.stat().st_size
    with open(log, "ab") as f:  # a crash in the middle of the next append
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00PK\x03")
    second = await opened(tmp_path)
    assert await second.count("t", "u") == 5
    assert log.stat().st_size == whole
    await second.upsert("t", "u", records(unit(rng, 2), "more"))
    third = await opened(tmp_path)
    assert await third.count("t", "u") == 7
    for index in (second, third):
        await index.close()


async def test_a_folder_of_other_dims_refuses_to_open(tmp_path: Path) -> None:
    await (await opened(tmp_path)).close()
    with pytest.raises(ValueError, match=f"holds {DIMS}-dim vectors"):
        await EmbeddedVectorIndex(tmp_path, DIMS * 2).start()


async def test_partitions_leave_the_lru_as_snapshots_and_come_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    index = await opened(tmp_path, max_open=1)
    data = {user: unit(rng, 10) for user in ("a", "b", "c")}
    for user, vectors in data.items():
        await index.upsert("t", user, records(vectors, user))
    assert len(files(tmp_path, ".npz")) == 2 and len(files(tmp_path, ".log")) == 1  # a and b were closed
    for user, vectors in data.items():
        assert await index.count("t", user) == 10
        assert (await index.query("t", user, vectors[4], 1))[0].id == f"{user}4"
    await index.close()
    assert len(files(tmp_path, ".npz")) == 3 and files(tmp_path, ".log") == []


async def test_concurrent_calls_across_users_with_a_small_lru(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    index = await opened(tmp_path, max_open=2)
    users = [f"u{i}" for i in range(6)]
    batches = {u: [unit(rng, 4) for _ in range(5)] for u in users}

    async def write(user: str) -> None:
        for b, vectors in enumerate(batches[user]):
            await index.upsert("t", user, records(vectors, f"{b}-"))
            await index.query("t", user, vectors[0], 3)
    await asyncio.gather(*(write(u) for u in users))
    assert [await index.count("t", u) for u in users] == [20] * 6
    await index.close()


async def test_the_hnsw_graph_is_saved_with_its_snapshot_and_dropped_when_small(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    data = unit(rng, 3 * SMALL_EXACT_MAX)
    index = await opened(tmp_path, exact_max=SMALL_EXACT_MAX)
    await index.upsert("t", "u", records(data, "r"))
    await index.close()
    assert len(files(tmp_path, ".hnsw")) == 1
    index = await opened(tmp_path, exact_max=SMALL_EXACT_MAX)
    q = unit(rng, 1)[0]
    assert [h.id for h in await index.query("t", "u", q, 5)] == [f"r{i}" for i in np.argsort(-(data @ q))[:5]]
    keep = SMALL_EXACT_MAX // 2 - 1  # below half the threshold the partition is scanned again
    assert await index.delete("t", "u", [f"r{i}" for i in range(keep, len(data))]) == len(data) - keep
    assert [h.id for h in await index.query("t", "u", q, 3)] == [f"r{i}" for i in np.argsort(-(data[:keep] @ q))[:3]]
    await index.close()
    assert files(tmp_path, ".hnsw") == []


async def test_vectors_are_normalised_and_a_zero_vector_is_refused(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    v = np.zeros(DIMS, dtype=np.float32)
    v[0] = 3.0
    await index.upsert("t", "u", [VectorRecord("r", v, "fact", 1.0)])
    assert (await index.query("t", "u", v * 5, 1))[0].score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero"):
        await index.upsert("t", "u", [VectorRecord("z", np.zeros(DIMS, dtype=np.float32), "fact", 1.0)])
    await index.close()


async def test_sweep_reaches_partitions_that_are_not_open(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    index = await opened(tmp_path)
    await index.upsert("t", "snapshotted", records(unit(rng, 4), "old", expires=10.0) + records(unit(rng, 2), "k"))
    await index.upsert("t", "fresh", records(unit(rng, 3), "new", expires=1000.0))
    await index.close()  # both are snapshots now, nothing open
    index = await opened(tmp_path)
    await index.upsert("t", "logged", records(unit(rng, 5), "old", expires=10.0))  # only a log on disk
    # that process dies without close(); the next one finds a partition that is only a log
    restarted = await opened(tmp_path)
    assert await restarted.sweep(100.0) == 9
    assert [await restarted.count("t", u) for u in ("snapshotted", "fresh", "logged")] == [2, 3, 0]
    await restarted.close()


async def test_a_load_outlives_a_caller_that_stops_waiting(tmp_path: Path, monkeypatch) -> None:
    """A query cancelled while its partition loads (a job past enrichment's budget) leaves the load to
    finish and be kept: the next query finds the partition open instead of loading it again."""
    rng = np.random.default_rng(14)
    data = unit(rng, 20)
    first = await opened(tmp_path)
    await first.upsert("t", "u", records(data, "r"))
    await first.close()
    second = await opened(tmp_path)
    started, release = threading.Event(), threading.Event()
    loads: list[Path] = []
    load = second._load

    def slow_load(stem: Path, create: bool):
        loads.append(stem)
        started.set()
        release.wait(10)
        return load(stem, create)

    monkeypatch.setattr(second, "_load", slow_load)
    waiting = asyncio.ensure_future(second.query("t", "u", data[3], 1))
    await asyncio.to_thread(started.wait, 10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    joined = asyncio.ensure_future(second.query("t", "u", data[5], 1))  # arrives while the load still runs
    await asyncio.sleep(0)
    release.set()
    assert (await joined)[0].id == "r5"
    assert (await second.query("t", "u", data[3], 1))[0].id == "r3"
    assert len(loads) == 1
    await second.close()
