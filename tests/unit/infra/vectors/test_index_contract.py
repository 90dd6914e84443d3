"""The VectorIndex contract (infra/vectors/base.py), one suite for every backend (conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from infra.vectors.base import VectorRecord

from .conftest import DIMS


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIMS)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def records(vectors: np.ndarray, prefix: str, kind: str = "interaction", created: float = 1.0,
            expires: float | None = None) -> list[VectorRecord]:
    return [VectorRecord(f"{prefix}{i}", v, kind, created + i, expires) for i, v in enumerate(vectors)]


async def test_query_matches_exact_search(open_index) -> None:
    rng = np.random.default_rng(1)
    index = await open_index()
    data = unit(rng, 120)
    await index.upsert("t", "u", records(data, "r"))
    for q in unit(rng, 5):
        hits = await index.query("t", "u", q, 10)
        exact = np.argsort(-(data @ q))[:10]
        assert [h.id for h in hits] == [f"r{i}" for i in exact]
        assert [h.score for h in hits] == pytest.approx((data @ q)[exact].tolist(), abs=1e-4)
        assert all(h.kind == "interaction" for h in hits)
        assert [h.created_at for h in hits] == pytest.approx([1.0 + i for i in exact])


async def test_a_user_never_sees_another_users_vectors(open_index) -> None:
    rng = np.random.default_rng(2)
    index = await open_index()
    mine, theirs, other_tenant = unit(rng, 50), unit(rng, 50), unit(rng, 50)
    await index.upsert("t", "alice", records(mine, "a"))
    await index.upsert("t", "bob", records(theirs, "b"))
    await index.upsert("t2", "alice", records(other_tenant, "x"))  # same user id, another tenant
    for q in (theirs[0], other_tenant[0]):  # each an exact match of someone else's vector
        hits = await index.query("t", "alice", q, 50)
        assert len(hits) == 50 and {h.id[0] for h in hits} == {"a"}
    hits = await index.query("t2", "alice", other_tenant[3], 3)
    assert hits[0].id == "x3" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [await index.count(*s) for s in (("t", "alice"), ("t", "bob"), ("t2", "alice"))] == [50, 50, 50]


async def test_kinds_filter(open_index) -> None:
    rng = np.random.default_rng(3)
    index = await open_index()
    interactions, facts = unit(rng, 60), unit(rng, 60)
    await index.upsert("t", "u", records(interactions, "i", "interaction") + records(facts, "f", "fact"))
    q = interactions[7]
    only_facts = await index.query("t", "u", q, 10, kinds=("fact",))
    assert len(only_facts) == 10 and all(h.kind == "fact" and h.id.startswith("f") for h in only_facts)
    assert [h.id for h in only_facts] == [f"f{i}" for i in np.argsort(-(facts @ q))[:10]]
    both = await index.query("t", "u", q, 10, kinds=("fact", "interaction"))
    assert both[0].id == "i7"
    assert await index.query("t", "u", q, 10, kinds=("preference",)) == []


async def test_upsert_replaces_by_id(open_index) -> None:
    rng = np.random.default_rng(4)
    index = await open_index()
    data = unit(rng, 60)
    await index.upsert("t", "u", records(data, "r"))
    moved = unit(rng, 1)[0]
    await index.upsert("t", "u", [VectorRecord("r5", moved, "fact", 99.0)])
    assert await index.count("t", "u") == 60
    hit = (await index.query("t", "u", moved, 1))[0]
    assert (hit.id, hit.kind, hit.created_at) == ("r5", "fact", 99.0)
    assert "r5" not in [h.id for h in await index.query("t", "u", data[5], 3)]


async def test_delete_and_erase_count_and_erase_twice_is_a_no_op(open_index) -> None:
    rng = np.random.default_rng(5)
    index = await open_index()
    await index.upsert("t", "u", records(unit(rng, 60), "r"))
    await index.upsert("t", "v", records(unit(rng, 5), "r"))
    assert await index.delete("t", "u", ["r1", "r2", "r2", "missing"]) == 2
    assert await index.delete("t", "u", ["r1"]) == 0
    assert await index.delete("t", "nobody", ["r1"]) == 0
    assert await index.count("t", "u") == 58
    assert await index.erase("t", "u") == 58
    assert await index.erase("t", "u") == 0
    assert await index.count("t", "u") == 0
    assert await index.query("t", "u", unit(rng, 1)[0], 5) == []
    assert await index.count("t", "v") == 5  # another user of the tenant keeps everything
    await index.upsert("t", "u", records(unit(rng, 2), "new"))  # an erased user can start again
    assert await index.count("t", "u") == 2


async def test_sweep_deletes_what_has_expired(open_index) -> None:
    rng = np.random.default_rng(6)
    index = await open_index()
    await index.upsert("t", "u", records(unit(rng, 50), "old", expires=100.0) + records(unit(rng, 4), "new",
                                                                                         expires=500.0))
    await index.upsert("t", "v", records(unit(rng, 3), "old", expires=150.0) + records(unit(rng, 2), "kept"))
    assert await index.sweep(200.0) == 53
    assert await index.sweep(200.0) == 0
    assert (await index.count("t", "u"), await index.count("t", "v")) == (4, 2)
    hits = await index.query("t", "u", unit(rng, 1)[0], 10)
    assert sorted(h.id for h in hits) == ["new0", "new1", "new2", "new3"]


async def test_survives_close_and_reopen(open_index) -> None:
    rng = np.random.default_rng(7)
    index = await open_index()
    data = unit(rng, 80)
    await index.upsert("t", "u", records(data, "r", "fact"))
    await index.delete("t", "u", ["r0"])
    await index.close()
    index = await open_index()
    assert await index.count("t", "u") == 79
    q = data[4]
    hits = await index.query("t", "u", q, 5)
    assert [h.id for h in hits] == [f"r{i}" for i in np.argsort(-(data @ q)) if i != 0][:5]
    assert hits[0].kind == "fact"


async def test_dims_mismatch_is_a_clear_value_error(open_index) -> None:
    index = await open_index()
    wrong = np.ones(DIMS + 1, dtype=np.float32)
    with pytest.raises(ValueError, match="dims"):
        await index.upsert("t", "u", [VectorRecord("r", wrong, "fact", 1.0)])
    with pytest.raises(ValueError, match="dims"):
        await index.query("t", "u", wrong, 3)
    assert await index.count("t", "u") == 0


async def test_empty_partition_query_is_empty(open_index) -> None:
    index = await open_index()
    assert await index.query("t", "nobody", np.ones(DIMS, dtype=np.float32), 5) == []
    assert await index.count("t", "nobody") == 0
