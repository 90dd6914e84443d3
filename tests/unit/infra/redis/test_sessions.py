"""Recent session turns (infra/redis/sessions.py) against a real redis-server."""

from __future__ import annotations

import uuid

import pytest

from infra.redis import keys
from infra.redis.client import connect
from infra.redis.sessions import SessionStore, Turn


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def turns(n: int, start: int = 0) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", f"turn {i}", job_id=f"j{i // 2}", at=float(i))
            for i in range(start, start + n)]


async def test_turns_come_back_in_chat_order_capped_to_the_last_n(redis, tenant):
    store = SessionStore(redis, turns=4, ttl_s=60)
    await store.append(tenant, "u1", "s1", *turns(3))
    assert await store.recent(tenant, "u1", "s1") == turns(3)
    await store.append(tenant, "u1", "s1", *turns(4, start=3))
    assert await store.recent(tenant, "u1", "s1") == turns(4, start=3)
    assert await store.recent(tenant, "u1", "s1", limit=2) == turns(2, start=5)
    assert await store.recent(tenant, "u1", "s1", limit=0) == []
    assert await store.recent(tenant, "u1", "unknown") == []
    assert await redis.llen(keys.session_turns(tenant, "u1", "s1")) == 4


async def test_a_session_expires_after_its_last_turn(redis, tenant):
    store = SessionStore(redis, turns=8, ttl_s=120)
    await store.append(tenant, "u1", "s1", *turns(1))
    await redis.expire(keys.session_turns(tenant, "u1", "s1"), 5)  # time has passed since
    await store.append(tenant, "u1", "s1", *turns(1, start=1))
    assert 100 < await redis.ttl(keys.session_turns(tenant, "u1", "s1")) <= 120  # restarted by the append
    assert 100 < await redis.ttl(keys.user_sessions(tenant, "u1")) <= 120


async def test_zero_turns_keeps_nothing(redis, tenant):
    store = SessionStore(redis, turns=0)
    await store.append(tenant, "u1", "s1", *turns(2))
    assert await store.recent(tenant, "u1", "s1") == []
    assert await redis.exists(keys.session_turns(tenant, "u1", "s1"), keys.user_sessions(tenant, "u1")) == 0


async def test_sessions_are_scoped_to_tenant_and_user_even_with_odd_ids(redis, tenant):
    store = SessionStore(redis)
    owners = [(tenant, "alice"), (tenant, "bob"), (tenant + "-2", "alice"),
              (f"{tenant}:x", "y"), (tenant, "x:y"),  # would collide if ids were joined with ':' raw
              (tenant, "}{ 用户 🙂 %3A")]
    for t, u in owners:
        await store.append(t, u, "same-session", Turn("user", f"{t}|{u} says 🦜 \n'\""))
    for t, u in owners:
        assert [x.text for x in await store.recent(t, u, "same-session")] == [f"{t}|{u} says 🦜 \n'\""]
        assert await store.sessions(t, u) == ["same-session"]


async def test_erase_user_deletes_every_session_then_is_a_no_op(redis, tenant):
    store = SessionStore(redis, turns=3)
    await store.append(tenant, "u1", "s1", *turns(5))
    await store.append(tenant, "u1", "s:2", *turns(2))
    await store.append(tenant, "u2", "s1", *turns(1))
    assert await store.sessions(tenant, "u1") == ["s1", "s:2"]

    assert await store.erase_user(tenant, "u1") == {"sessions": 2, "session_turns": 5}
    assert await store.recent(tenant, "u1", "s1") == [] and await store.sessions(tenant, "u1") == []
    pattern = keys.user_sessions(tenant, "u1").rsplit(":", 1)[0].replace("{", "\\{").replace("}", "\\}") + "*"
    assert [k async for k in redis.scan_iter(match=pattern)] == []
    assert await store.erase_user(tenant, "u1") == {"sessions": 0, "session_turns": 0}
    assert await store.recent(tenant, "u2", "s1") == turns(1)


async def test_an_erase_racing_appends_never_leaves_a_session_it_cannot_find(redis, tenant):
    """Every list left after erases and appends run together is named in the index (a later erase finds it)."""
    import asyncio

    store = SessionStore(redis)
    for round_ in range(100):
        await store.append(tenant, "u1", f"old-{round_}", *turns(2))
        await asyncio.gather(store.erase_user(tenant, "u1"), store.append(tenant, "u1", f"new-{round_}", *turns(1)),
                             store.append(tenant, "u1", f"old-{round_}", *turns(1)))
        indexed = set(await store.sessions(tenant, "u1"))
        for session in (f"old-{round_}", f"new-{round_}"):
            if await redis.exists(keys.session_turns(tenant, "u1", session)):
                assert session in indexed
    await store.erase_user(tenant, "u1")
    assert [k async for k in redis.scan_iter(match=f"*{tenant}*")] == []


def test_a_users_keys_share_one_cluster_slot():
    def tag(key: str) -> str:
        return key[key.index("{") + 1:key.index("}")]

    a, b = keys.session_turns("t", "u{x}", "s}1"), keys.user_sessions("t", "u{x}")
    assert tag(a) == tag(b) == "t/u%7Bx%7D"
    assert tag(keys.user_sessions("t", "v")) != tag(b)
