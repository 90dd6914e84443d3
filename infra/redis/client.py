"""redis.asyncio client construction and a health check with a clear error.

Every client has socket timeouts (a paused Redis is an error within the timeout, never a hang)
and a bounded connection pool: a caller waits for a free connection, up to the socket timeout.
"""

from __future__ import annotations

import functools

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

try:
    import hiredis
except ImportError:  # a pure-Python install: redis-py packs every command itself
    hiredis = None

#: defaults of every client; the gateway passes its settings
MAX_CONNECTIONS = 64
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0


#: argument types hiredis packs exactly as redis-py does (anything else is packed, or refused, by redis-py)
_PACKABLE = frozenset({bytes, str, int})


class HiredisPacking:
    """Mixed into a pool's connection class: commands are packed by hiredis, in C.

    redis.asyncio packs in Python, argument by argument, even with hiredis installed (only its
    synchronous client uses hiredis to pack). A pipeline of 100 script calls of 23 arguments (the
    fan-out's batch) took 5.3 ms to pack that way and 0.9 ms with hiredis. The bytes are the same.
    """

    def pack_command(self, *args):
        if isinstance(args[0], str):  # 'CONFIG GET' and the like are sent as separate words
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        for arg in args:
            if arg.__class__ not in _PACKABLE:
                return super().pack_command(*args)
        return [hiredis.pack_command(args)]


@functools.cache
def _with_hiredis_packing(base: type) -> type:
    return type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})


def _hiredis_packing(pool: aioredis.ConnectionPool) -> None:
    if hiredis is not None and not issubclass(pool.connection_class, HiredisPacking):
        pool.connection_class = _with_hiredis_packing(pool.connection_class)  # TCP, TLS or a Unix socket alike


class RedisUnavailable(ConnectionError):
    def __init__(self, url: str, cause: BaseException | None = None) -> None:
        super().__init__(
            f"cannot reach Redis at {url}"
            + (f" ({cause})" if cause else "")
            + ": start it (or run `genloom up`), or set GENLOOM_REDIS_URL"
        )


def connect(url: str, *, max_connections: int = MAX_CONNECTIONS, socket_timeout_s: float = SOCKET_TIMEOUT_S,
            connect_timeout_s: float = CONNECT_TIMEOUT_S) -> aioredis.Redis:
    """A client; no connection is opened until first use. Blocking commands must block for less
    than `socket_timeout_s`."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=socket_timeout_s, socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s, health_check_interval=30, decode_responses=False,
    )
    _hiredis_packing(pool)
    return aioredis.Redis.from_pool(pool)


async def check(client: aioredis.Redis, url: str) -> None:
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        raise RedisUnavailable(url, exc) from None
