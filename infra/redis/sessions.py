"""The recent turns of a user's sessions, in Redis: what enrichment puts before a question so a
chat continues where it was, without reading long-term memory for it.

Each (tenant, user, session) is one list of JSON turns, trimmed to the last `turns` and expiring
`ttl_s` after its last append; a per-user set names the user's sessions so `erase_user` finds them
all. Keys: infra/redis/keys.py (`session_turns`, `user_sessions`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from . import keys


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str  # redacted, as the privacy stage let it through
    job_id: str | None = None
    at: float = 0.0


class SessionStore:
    """`turns` and `ttl_s` are MemorySettings.session_turns and session_ttl_s (turns 0: nothing is kept)."""

    def __init__(self, redis: aioredis.Redis, *, turns: int = 8, ttl_s: int = 3600) -> None:
        self._redis = redis
        self._turns = turns
        self._ttl = ttl_s

    async def append(self, tenant: str, user: str, session: str, *turns: Turn) -> None:
        """Add turns at the end, drop all but the last `turns`, restart the expiry (one transaction)."""
        if not turns or self._turns <= 0:
            return
        key, index = keys.session_turns(tenant, user, session), keys.user_sessions(tenant, user)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, *(json.dumps(asdict(t), ensure_ascii=False) for t in turns))
        pipe.ltrim(key, -self._turns, -1)
        pipe.expire(key, self._ttl)
        # the index expires with the user's newest session: it outlives every list it names
        pipe.sadd(index, session)
        pipe.expire(index, self._ttl)
        await pipe.execute()

    async def recent(self, tenant: str, user: str, session: str, limit: int | None = None) -> list[Turn]:
        """The session's last turns, oldest first (chat order); `limit` keeps only the newest few."""
        if limit is not None and limit <= 0:
            return []
        start = -limit if limit is not None else 0
        raw = await self._redis.lrange(keys.session_turns(tenant, user, session), start, -1)
        return [Turn(**json.loads(item)) for item in raw]

    async def sessions(self, tenant: str, user: str) -> list[str]:
        """The user's session ids that may still hold turns, sorted."""
        return sorted(m.decode() for m in await self._redis.smembers(keys.user_sessions(tenant, user)))

    async def erase_user(self, tenant: str, user: str) -> dict[str, int]:
        """Delete every session of the user; the sessions and turns deleted (zeros the second time).

        The index and the lists are watched: a turn appended meanwhile restarts the erase, so it is
        never left behind in a session the erase did not see.
        """
        index = keys.user_sessions(tenant, user)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(index)
                    lists = [keys.session_turns(tenant, user, m.decode()) for m in await pipe.smembers(index)]
                    if lists:
                        await pipe.watch(*lists)
                    lengths = [await pipe.llen(k) for k in lists]
                    pipe.multi()
                    pipe.delete(index, *lists)
                    await pipe.execute()
                except WatchError:
                    continue
                return {"sessions": sum(1 for n in lengths if n), "session_turns": sum(lengths)}
