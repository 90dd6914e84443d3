"""Commands packed by hiredis (infra.redis.client.HiredisPacking) are byte for byte what redis-py packs,
and what redis-py refuses is still refused with its error."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from infra.redis.client import HiredisPacking, connect

CASES = [
    ("SET", "k", "v"),
    ("CONFIG GET", "maxmemory"),  # a command name of two words
    (b"CONFIG SET", b"maxmemory", 0),
    ("EVALSHA", "a" * 40, 3, "genloom:job:{j}", "k2", "k3", "worker", -1, 0, 10**15, "", "é ü ✓", b"\x00\r\n\xff"),
    ("SET", "k", 1.5),  # a float: redis-py packs it (its repr)
    ("SET", "k", memoryview(b"abc")),
]


def packed(conn, args) -> bytes:
    return b"".join(bytes(chunk) for chunk in conn.pack_command(*args))


@pytest.mark.parametrize("args", CASES, ids=[str(c[0]) for c in CASES])
def test_the_bytes_are_redis_pys(args):
    fast = connect("redis://127.0.0.1:1").connection_pool.connection_class()
    assert isinstance(fast, HiredisPacking)
    assert packed(fast, args) == packed(Connection(), args)


def test_a_pipeline_packs_the_same_and_what_redis_py_refuses_is_refused():
    fast = connect("redis://127.0.0.1:1").connection_pool.connection_class()
    assert b"".join(fast.pack_commands(CASES)) == b"".join(Connection().pack_commands(CASES))
    with pytest.raises(DataError, match="bool"):
        fast.pack_command("SET", "k", True)
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", None)


def test_every_scheme_keeps_its_own_connection_class():
    unix = connect("unix:///tmp/nowhere.sock").connection_pool.connection_class
    assert issubclass(unix, HiredisPacking) and issubclass(unix, UnixDomainSocketConnection)
    assert connect("redis://127.0.0.1:1").connection_pool.connection_class is \
        connect("redis://127.0.0.1:2").connection_pool.connection_class  # one class per kind, not per client
