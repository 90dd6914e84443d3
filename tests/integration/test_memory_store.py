"""The memory store contract (infra/memory/base.py), one suite run against every backend: SQLite
always, Cassandra against the real 2.1 server (tests/conftest.py `cassandra_node`; CI=true fails
without it). Each test writes under tenants of its own, so the Cassandra cases share one keyspace."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path

import pytest

from infra.memory import open_store
from infra.memory.base import AuditRecord, Fact, Feedback, Interaction, MemoryStore, Profile
from infra.memory.sqlite import SqliteMemoryStore
from infra.settings.memory import MemorySettings

#: text a store must keep byte for byte: emoji (outside the BMP), CJK, right-to-left, combining
#: marks, quotes and CQL/SQL syntax, control characters
ODD_TEXTS = [
    "I love 🦜 parrots 👩🏽‍🚀 and 🇳🇿",
    "我最喜欢的颜色是青色。",
    "اللون المفضل لدي هو الأزرق",
    "e\u0301 cafe\u0301 Ωmega",
    "it's \"quoted\"; DROP TABLE facts; -- ' OR 1=1 $$",
    "tabs\tnew\nlines\r\n\x00nul",
]
#: a long answer: about 200k characters (a long chat, well past one Cassandra page of cells)
LONG_TEXT = "🌊 the tide comes in. " * 10_000


@pytest.fixture(scope="session")
async def cassandra_store(cassandra_node):
    from infra.memory.cassandra import CassandraMemoryStore

    store = CassandraMemoryStore(cassandra_node.hosts, cassandra_node.port, keyspace="genloom_test")
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path):
    store = SqliteMemoryStore(tmp_path / "memory.db")
    await store.start()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.integration)])
def store(request) -> MemoryStore:
    """Each backend in turn (a plain fixture: pytest-asyncio sets up the async ones it names)."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def tenant() -> str:
    """A tenant no other test writes under."""
    return f"t-{uuid.uuid4().hex[:12]}"


def interaction(tenant: str, user: str, id: str, at: float, **kw) -> Interaction:
    return Interaction(id=id, tenant=tenant, user=user, session="s1", modality="text", prompt=f"prompt {id}",
                       created_at=at, **kw)


def fact(tenant: str, user: str, id: str, obj: str, at: float, **kw) -> Fact:
    return Fact(id=id, tenant=tenant, user=user, subject="user", relation="favourite_colour", object=obj,
                text=f"The user's favourite colour is {obj}.", created_at=at, source_job=f"job-{id}", **kw)


async def test_profile_round_trip_and_replace(store: MemoryStore, tenant: str):
    assert await store.get_profile(tenant, "nobody") is None
    profile = Profile(tenant, "u1", memory_enabled=False, preferences={"answer_length": "short", "画风": "水彩 🎨"},
                      created_at=100.5, updated_at=101.25)
    await store.put_profile(profile)
    assert await store.get_profile(tenant, "u1") == profile
    changed = dataclasses.replace(profile, memory_enabled=True, preferences={}, updated_at=200.0)
    await store.put_profile(changed)
    assert await store.get_profile(tenant, "u1") == changed


async def test_interactions_put_complete_get_and_recent(store: MemoryStore, tenant: str):
    now = time.time()
    items = [interaction(tenant, "u1", f"j{i}", now + i, importance=0.1 * i, expires_at=now + 3600) for i in range(5)]
    for item in items:
        await store.put_interaction(item)
    recent = await store.recent_interactions(tenant, "u1", 3)
    assert [i.id for i in recent] == ["j4", "j3", "j2"]
    assert recent[0] == items[4]
    assert await store.recent_interactions(tenant, "u1", 0) == []

    assert await store.complete_interaction(tenant, "u1", "j1", "the answer") is True
    assert await store.complete_interaction(tenant, "u1", "missing", "x") is False
    got = await store.get_interactions(tenant, "u1", ["j1", "missing", "j0", "j1"])
    assert [i.id for i in got] == ["j1", "j0"]
    assert got[0] == dataclasses.replace(items[1], answer="the answer") and got[1].answer is None
    assert await store.get_interactions(tenant, "u1", []) == []

    # writing the same job again replaces its row, here moving it to the newest place
    await store.put_interaction(dataclasses.replace(items[0], prompt="rewritten", created_at=now + 10))
    recent = await store.recent_interactions(tenant, "u1", 10)
    assert [i.id for i in recent] == ["j0", "j4", "j3", "j2", "j1"]
    assert recent[0].prompt == "rewritten" and recent[-1].answer == "the answer"


async def test_facts_supersede_keeps_the_old_fact_marked(store: MemoryStore, tenant: str):
    now = time.time()
    red = fact(tenant, "u1", "f-red", "red", now)
    teal = fact(tenant, "u1", "f-teal", "teal", now + 5, importance=0.9)
    shellfish = Fact(id="f-shell", tenant=tenant, user="u1", subject="user", relation="allergic_to",
                     object="shellfish", text="The user is allergic to shellfish.", created_at=now + 1)
    for f in (red, shellfish, teal):
        await store.put_fact(f)
    assert [f.id for f in await store.facts(tenant, "u1")] == ["f-teal", "f-shell", "f-red"]

    assert await store.supersede(tenant, "u1", ["f-red", "f-missing", "f-teal"], by="f-teal", at=now + 5) == 1
    assert [f.id for f in await store.facts(tenant, "u1")] == ["f-teal", "f-shell"]
    every = await store.facts(tenant, "u1", current_only=False)
    assert [f.id for f in every] == ["f-teal", "f-shell", "f-red"]
    assert every[2] == dataclasses.replace(red, superseded_by="f-teal", superseded_at=now + 5)
    # an already superseded fact is not marked again (its history stays as it was)
    assert await store.supersede(tenant, "u1", ["f-red"], by="f-shell", at=now + 9) == 0
    got = await store.get_facts(tenant, "u1", ["f-red", "f-teal", "nope"])
    assert [f.id for f in got] == ["f-red", "f-teal"]
    assert got[0].superseded_by == "f-teal" and got[1] == teal


async def test_feedback_round_trip_newest_first(store: MemoryStore, tenant: str):
    old = Feedback(id="fb1", tenant=tenant, user="u1", job_id="j1", rating=-1, created_at=10.0)
    new = Feedback(id="fb2", tenant=tenant, user="u1", job_id="j2", rating=1, correction="It is teal, not red 🦚",
                   preference="shorter answers", created_at=20.0, expires_at=time.time() + 3600)
    await store.put_feedback(old)
    await store.put_feedback(new)
    assert await store.feedback(tenant, "u1") == [new, old]
    assert await store.feedback(tenant, "u2") == []


async def test_nothing_crosses_users_or_tenants(store: MemoryStore, tenant: str):
    """The same user id under two tenants, and two users of one tenant: every read and write stays in its pair."""
    other = tenant + "-other"
    now = time.time()
    pairs = [(tenant, "alice"), (tenant, "bob"), (other, "alice")]
    for t, u in pairs:
        await store.put_profile(Profile(t, u, preferences={"who": f"{t}/{u}"}))
        await store.put_interaction(interaction(t, u, "same-job-id", now, answer=f"{t}/{u}"))
        await store.put_fact(fact(t, u, "same-fact-id", f"{t}/{u}", now))
        await store.put_feedback(Feedback(id="same-fb-id", tenant=t, user=u, job_id="same-job-id", correction=f"{t}/{u}"))
    for t, u in pairs:
        owner = f"{t}/{u}"
        assert (await store.get_profile(t, u)).preferences == {"who": owner}
        assert [i.answer for i in await store.recent_interactions(t, u, 10)] == [owner]
        assert [i.answer for i in await store.get_interactions(t, u, ["same-job-id"])] == [owner]
        assert [f.object for f in await store.facts(t, u, current_only=False)] == [owner]
        assert [f.object for f in await store.get_facts(t, u, ["same-fact-id"])] == [owner]
        assert [f.correction for f in await store.feedback(t, u)] == [owner]
        exported = json.dumps(await store.export(t, u))
        assert owner in exported and all(f"{a}/{b}" not in exported for a, b in pairs if (a, b) != (t, u))
    assert await store.recent_interactions(tenant, "carol", 10) == []

    # writes addressed to one pair never change another's rows
    assert await store.complete_interaction(other, "bob", "same-job-id", "x") is False
    assert await store.supersede(other, "bob", ["same-fact-id"], by="f2", at=now) == 0
    assert await store.supersede(tenant, "bob", ["same-fact-id"], by="f2", at=now) == 1
    assert (await store.facts(tenant, "alice"))[0].superseded_by is None
    assert (await store.facts(other, "alice"))[0].superseded_by is None

    assert await store.erase(tenant, "alice") == {"profile": 1, "interactions": 1, "facts": 1, "feedback": 1}
    assert (await store.get_profile(other, "alice")).preferences == {"who": f"{other}/alice"}
    assert len(await store.recent_interactions(tenant, "bob", 10)) == 1
    assert len(await store.facts(other, "alice")) == 1


async def test_export_lists_everything_kept(store: MemoryStore, tenant: str):
    assert await store.export(tenant, "ghost") == {"profile": None, "interactions": [], "facts": [], "feedback": []}
    now = time.time()
    profile = Profile(tenant, "u1", preferences={"image_style": "watercolour"}, created_at=1.0, updated_at=2.0)
    first = interaction(tenant, "u1", "j1", now, answer="a1", expires_at=now + 3600)
    second = interaction(tenant, "u1", "j2", now + 1)
    old, new = fact(tenant, "u1", "f1", "red", now), fact(tenant, "u1", "f2", "teal", now + 1)
    note = Feedback(id="fb1", tenant=tenant, user="u1", job_id="j1", rating=1, created_at=now)
    await store.put_profile(profile)
    for item in (first, second):
        await store.put_interaction(item)
    for f in (old, new):
        await store.put_fact(f)
    await store.supersede(tenant, "u1", ["f1"], by="f2", at=now + 1)
    await store.put_feedback(note)

    exported = await store.export(tenant, "u1")
    assert json.loads(json.dumps(exported)) == exported  # JSON-ready as it is
    assert exported == {
        "profile": dataclasses.asdict(profile),
        "interactions": [dataclasses.asdict(second), dataclasses.asdict(first)],
        "facts": [dataclasses.asdict(new),
                  dataclasses.asdict(dataclasses.replace(old, superseded_by="f2", superseded_at=now + 1))],
        "feedback": [dataclasses.asdict(note)],
    }


async def test_erase_counts_then_zeros_and_audits_round_trip(store: MemoryStore, tenant: str):
    now = time.time()
    await store.put_profile(Profile(tenant, "u1"))
    for i in range(3):
        await store.put_interaction(interaction(tenant, "u1", f"j{i}", now + i))
    for i in range(2):
        await store.put_fact(fact(tenant, "u1", f"f{i}", "red", now + i))
    await store.put_feedback(Feedback(id="fb", tenant=tenant, user="u1", job_id="j0", rating=1))
    await store.put_interaction(interaction(tenant, "u2", "j0", now))

    counts = await store.erase(tenant, "u1")
    assert counts == {"profile": 1, "interactions": 3, "facts": 2, "feedback": 1}
    assert await store.erase(tenant, "u1") == {"profile": 0, "interactions": 0, "facts": 0, "feedback": 0}
    assert await store.export(tenant, "u1") == {"profile": None, "interactions": [], "facts": [], "feedback": []}
    assert await store.get_interactions(tenant, "u1", ["j0", "j1"]) == []
    assert await store.complete_interaction(tenant, "u1", "j0", "late answer") is False
    assert [i.id for i in await store.recent_interactions(tenant, "u2", 5)] == ["j0"]

    first = AuditRecord(id="a1", tenant=tenant, user="u1", action="erase", counts=counts, at=now)
    second = AuditRecord(id="a2", tenant=tenant, user=None, action="retention", counts={"facts": 4}, at=now + 1)
    elsewhere = AuditRecord(id="a3", tenant=tenant + "-x", user="u1", action="erase", counts={}, at=now)
    for record in (first, second, elsewhere):
        await store.put_audit(record)
    assert await store.audits(tenant) == [second, first]
    assert await store.audits(tenant, "u1") == [first]
    assert await store.audits(tenant, "u2") == []


async def test_sweep_deletes_expired_rows_and_reads_hide_them(store: MemoryStore, tenant: str):
    now = time.time()
    # Cassandra's sweep spans the shared keyspace: first clear every expiring row other tests left
    await store.sweep(now + 100 * 365 * 86400)
    soon, later = now + 600, now + 30 * 86400
    for i, expires in enumerate((soon, soon, later, None)):
        await store.put_interaction(interaction(tenant, "u1", f"j{i}", now + i, expires_at=expires))
    await store.put_fact(fact(tenant, "u1", "f-soon", "red", now, expires_at=soon))
    await store.put_fact(fact(tenant, "u1", "f-later", "teal", now + 1, expires_at=later))
    await store.put_feedback(Feedback(id="fb-soon", tenant=tenant, user="u1", job_id="j0", expires_at=soon))
    await store.put_feedback(Feedback(id="fb-keep", tenant=tenant, user="u2", job_id="j9"))

    assert await store.sweep(now) == {"interactions": 0, "facts": 0, "feedback": 0}
    assert await store.sweep(soon + 1) == {"interactions": 2, "facts": 1, "feedback": 1}
    assert [i.id for i in await store.recent_interactions(tenant, "u1", 10)] == ["j3", "j2"]
    assert [f.id for f in await store.facts(tenant, "u1", current_only=False)] == ["f-later"]
    assert await store.feedback(tenant, "u1") == [] and len(await store.feedback(tenant, "u2")) == 1
    assert await store.sweep(soon + 1) == {"interactions": 0, "facts": 0, "feedback": 0}

    # a row already past its expiry is never served, swept or not
    await store.put_interaction(interaction(tenant, "u3", "gone", now, expires_at=now - 1))
    await store.put_fact(fact(tenant, "u3", "gone", "red", now, expires_at=now - 1))
    assert await store.recent_interactions(tenant, "u3", 5) == []
    assert await store.get_interactions(tenant, "u3", ["gone"]) == []
    assert await store.facts(tenant, "u3") == [] and await store.get_facts(tenant, "u3", ["gone"]) == []
    assert await store.complete_interaction(tenant, "u3", "gone", "x") is False


async def test_unicode_and_long_text_round_trip_exactly(store: MemoryStore, tenant: str):
    user = "用户-🙂"  # user ids are free-form strings too
    now = time.time()
    for i, text in enumerate([*ODD_TEXTS, LONG_TEXT]):
        await store.put_interaction(dataclasses.replace(interaction(tenant, user, f"j{i}", now + i), prompt=text,
                                                        answer=text[::-1], session=f"s-{text[:8]}"))
        await store.put_fact(dataclasses.replace(fact(tenant, user, f"f{i}", text, now + i), text=text))
    stored = await store.recent_interactions(tenant, user, 100)
    assert [i.prompt for i in reversed(stored)] == [*ODD_TEXTS, LONG_TEXT]
    assert all(i.answer == i.prompt[::-1] and i.session == f"s-{i.prompt[:8]}" for i in stored)
    facts = await store.get_facts(tenant, user, [f"f{i}" for i in range(len(ODD_TEXTS) + 1)])
    assert [(f.object, f.text) for f in facts] == [(t, t) for t in [*ODD_TEXTS, LONG_TEXT]]
    assert await store.complete_interaction(tenant, user, "j0", LONG_TEXT) is True
    assert (await store.get_interactions(tenant, user, ["j0"]))[0].answer == LONG_TEXT


def test_open_store_chooses_by_settings(tmp_path: Path):
    store = open_store(MemorySettings(), tmp_path)
    assert isinstance(store, SqliteMemoryStore) and store._path == tmp_path / "memory.db"
    assert open_store(MemorySettings(sqlite_path=str(tmp_path / "x.db")), tmp_path)._path == tmp_path / "x.db"
    with pytest.raises(ValueError, match="unknown memory store 'mongo'"):
        open_store(MemorySettings(store="mongo"), tmp_path)


def test_open_store_builds_cassandra_without_connecting(tmp_path: Path):
    from infra.memory.cassandra import CassandraMemoryStore

    store = open_store(MemorySettings(store="cassandra", cassandra_hosts="10.0.0.1, 10.0.0.2", cassandra_port=9142,
                                      cassandra_keyspace="mem", cassandra_replication=3), tmp_path)
    assert isinstance(store, CassandraMemoryStore)
    assert (store._hosts, store._port, store._ks, store._replication) == (["10.0.0.1", "10.0.0.2"], 9142, "mem", 3)
    with pytest.raises(ValueError, match="invalid Cassandra keyspace"):
        CassandraMemoryStore(["127.0.0.1"], keyspace="x; DROP")


async def test_a_store_that_cannot_run_says_so(tmp_path: Path):
    """Nothing listening: start fails at once with the driver's error, never hangs; an unstarted store refuses calls."""
    from cassandra.cluster import NoHostAvailable

    from infra.memory.cassandra import CassandraMemoryStore
    from infra.procs import free_port

    with pytest.raises(NoHostAvailable):
        await CassandraMemoryStore(["127.0.0.1"], free_port()).start()
    with pytest.raises(RuntimeError, match="not started"):
        await CassandraMemoryStore(["127.0.0.1"]).get_profile("t", "u")
    with pytest.raises(RuntimeError, match="not started"):
        await SqliteMemoryStore(tmp_path / "m.db").get_profile("t", "u")
