"""redis.asyncio client construction and a health check with a clear error.

Every client has socket timeouts (a paused Redis is an error within the timeout, never a hang)
and a bounded connection pool: a caller waits for a free connection, up to the socket timeout.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

#: defaults of every client; the gateway passes its settings
MAX_CONNECTIONS = 64
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0


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
    return aioredis.Redis.from_pool(pool)


async def check(client: aioredis.Redis, url: str) -> None:
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        raise RedisUnavailable(url, exc) from None
