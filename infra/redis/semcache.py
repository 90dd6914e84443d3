"""The semantic cache's shared tier in Redis: per-scope bounded sets of entries, compared in the caller.

Debian's Redis has no vector search, so a scope's vectors are read whole (one HGETALL; a scope is
bounded) and compared by the caller in numpy. One Lua script stores an entry and enforces every bound
at once: entries per scope, entries and bytes of all scopes (least recently used evicted first), and
age (entries unused for the TTL are dropped; the caller also skips entries older than the TTL).
Every key and number is in `infra.redis.keys`. The client should have short timeouts: a cache that
waits on a slow Redis is worse than none.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import redis.asyncio as aioredis

from . import keys

#: the made-at time in front of each stored vector (little-endian float64)
_STAMP = struct.Struct("<d")

_PUT = """
local eid, vec, body = ARGV[1], ARGV[2], ARGV[3]
local now, size = tonumber(ARGV[4]), tonumber(ARGV[5])
local scope_max, max_entries, max_bytes, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local scope, prefix = ARGV[10], ARGV[11]
local lru, sizes, total = KEYS[4], KEYS[5], KEYS[6]
local member = scope .. '/' .. eid
local function drop(m)
  local s, id = string.match(m, '^(.-)/(.*)$')
  local base = prefix .. s
  redis.call('HDEL', base .. ':answers', id)
  redis.call('HDEL', base .. ':vectors', id)
  redis.call('ZREM', base .. ':lru', id)
  local sz = redis.call('HGET', sizes, m)
  if sz then
    redis.call('DECRBY', total, sz)
    redis.call('HDEL', sizes, m)
  end
  redis.call('ZREM', lru, m)
end
if redis.call('HEXISTS', sizes, member) == 1 then drop(member) end
redis.call('HSET', KEYS[1], eid, body)
redis.call('HSET', KEYS[2], eid, vec)
redis.call('ZADD', KEYS[3], now, eid)
redis.call('ZADD', lru, now, member)
redis.call('HSET', sizes, member, size)
redis.call('INCRBY', total, size)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', lru, '-inf', now - ttl, 'LIMIT', 0, 64)) do drop(m) end
while redis.call('ZCARD', KEYS[3]) > scope_max do
  drop(scope .. '/' .. redis.call('ZRANGE', KEYS[3], 0, 0)[1])
end
while redis.call('ZCARD', lru) > max_entries or tonumber(redis.call('GET', total) or '0') > max_bytes do
  local oldest = redis.call('ZRANGE', lru, 0, 0)[1]
  if not oldest then break end
  drop(oldest)
end
return redis.call('ZCARD', lru)
"""


_FORGET = """
local prefix, n = ARGV[1], 0
for i = 2, #ARGV do
  local m = ARGV[i]
  local s, id = string.match(m, '^(.-)/(.*)$')
  local base = prefix .. s
  n = n + redis.call('HDEL', base .. ':answers', id)
  redis.call('HDEL', base .. ':vectors', id)
  redis.call('ZREM', base .. ':lru', id)
  local sz = redis.call('HGET', KEYS[2], m)
  if sz then
    redis.call('DECRBY', KEYS[3], sz)
    redis.call('HDEL', KEYS[2], m)
  end
  redis.call('ZREM', KEYS[1], m)
end
return n
"""


@dataclass(frozen=True)
class StoredVector:
    entry_id: str
    made_at: float
    f16: bytes


@dataclass(frozen=True)
class Bounds:
    max_entries: int = keys.CACHE_MAX_ENTRIES
    max_bytes: int = keys.CACHE_MAX_BYTES
    scope_max_entries: int = keys.CACHE_SCOPE_MAX_ENTRIES
    ttl_s: int = keys.CACHE_TTL_S
    pending_ttl_s: int = keys.CACHE_PENDING_TTL_S


@dataclass(frozen=True)
class NewEntry:
    scope: str
    entry_id: str
    f16: bytes
    answer: bytes
    made_at: float
    nbytes: int


class SemanticCacheStore:
    """Reads and writes of the shared tier; raises redis errors for the caller to degrade on."""

    def __init__(self, redis: aioredis.Redis, bounds: Bounds | None = None) -> None:
        self._redis = redis
        self.bounds = bounds or Bounds()
        self._put = redis.register_script(_PUT)
        self._forget = redis.register_script(_FORGET)

    async def vectors(self, scopes: list[str]) -> dict[str, list[StoredVector]]:
        """Every stored vector of each scope (one round trip for all of them)."""
        if len(scopes) == 1:  # the common batch: one scope needs no pipeline
            replies = [await self._redis.hgetall(keys.cache_scope(scopes[0]) + ":vectors")]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for scope in scopes:
                    pipe.hgetall(keys.cache_scope(scope) + ":vectors")
                replies = await pipe.execute()
        found: dict[str, list[StoredVector]] = {}
        for scope, reply in zip(scopes, replies):
            found[scope] = [StoredVector(eid.decode(), _STAMP.unpack_from(raw)[0], raw[_STAMP.size:])
                            for eid, raw in reply.items() if len(raw) > _STAMP.size]
        return found

    async def answers(self, wanted: list[tuple[str, str]], now: float) -> list[bytes | None]:
        """The answers of (scope, entry id) pairs, each marked used now (one round trip)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for scope, eid in wanted:
                base = keys.cache_scope(scope)
                pipe.hget(base + ":answers", eid)
                pipe.zadd(base + ":lru", {eid: now}, xx=True)
                pipe.zadd(keys.cache_lru(), {f"{scope}/{eid}": now}, xx=True)
            replies = await pipe.execute()
        return [replies[3 * i] for i in range(len(wanted))]

    async def put_many(self, entries: list[NewEntry], now: float) -> None:
        """Store entries (one round trip), evicting what the bounds require."""
        if not entries:
            return
        b = self.bounds
        async with self._redis.pipeline(transaction=False) as pipe:
            for e in entries:
                base = keys.cache_scope(e.scope)
                await self._put(
                    keys=[base + ":answers", base + ":vectors", base + ":lru", keys.cache_lru(), keys.cache_sizes(),
                          keys.cache_bytes()],
                    args=[e.entry_id, _STAMP.pack(e.made_at) + e.f16, e.answer, now, e.nbytes, b.scope_max_entries,
                          b.max_entries, b.max_bytes, b.ttl_s, e.scope, keys.cache_scope_prefix()],
                    client=pipe,
                )
            await pipe.execute()

    async def remember_misses(self, misses: list[tuple[str, bytes]]) -> None:
        """(job id, what to store its answer under) for each job that missed (one round trip)."""
        if not misses:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, payload in misses:
                pipe.set(keys.cache_pending(job_id), payload, ex=self.bounds.pending_ttl_s)
            await pipe.execute()

    async def claim_misses(self, job_ids: list[str]) -> list[bytes | None]:
        """Take (read and delete) the miss markers of finished jobs; None where there was none."""
        if not job_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.getdel(keys.cache_pending(job_id))
            return await pipe.execute()

    async def forget(self, job_ids: list[str]) -> int:
        """Delete every entry whose answer came from one of these jobs (entries are named by their source
        job); how many. A scan of the cache's LRU index, bounded by its size: erasure is rare."""
        wanted = set(job_ids)
        if not wanted:
            return 0
        members = [m async for m in self._redis.zscan_iter(keys.cache_lru(), count=1000)]
        doomed = [m[0].decode() if isinstance(m, tuple) else m.decode() for m in members]
        doomed = [m for m in doomed if m.rpartition("/")[2] in wanted]
        if not doomed:
            return 0
        return int(await self._forget(keys=[keys.cache_lru(), keys.cache_sizes(), keys.cache_bytes()],
                                      args=[keys.cache_scope_prefix(), *doomed]))

    async def stats(self) -> tuple[int, int]:
        """(entries, bytes) of all scopes together."""
        entries, total = await self._redis.zcard(keys.cache_lru()), await self._redis.get(keys.cache_bytes())
        return int(entries), int(total or 0)
