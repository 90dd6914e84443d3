"""redis.asyncio client construction and a health check with a clear error."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError


class RedisUnavailable(ConnectionError):
    def __init__(self, url: str, cause: BaseException | None = None) -> None:
        super().__init__(
            f"cannot reach Redis at {url}"
            + (f" ({cause})" if cause else "")
            + ": start it (or run `genloom up`), or set GENLOOM_REDIS_URL"
        )


def connect(url: str) -> aioredis.Redis:
    """A client; no connection is opened until first use."""
    return aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)


async def check(client: aioredis.Redis, url: str) -> None:
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        raise RedisUnavailable(url, exc) from None
