"""The fan-out's one atomic Redis call per event (a Lua script).

In one round trip it deduplicates by (source, attempt, seq), drops events of a superseded attempt,
keeps only the first terminal event, appends to the bounded replay log with the next entry id
``N-0``, updates the status record (never moving its status backwards), releases the tenant's
in-flight slot exactly once on the terminal event, and renews every expiry.

Keys: the job's record, replay log and dedupe hash (one cluster slot, by hash tag) and, for
terminal events only, the tenant's in-flight counter, whose name the gateway stored in the record
(``slot``). On Redis Cluster that counter lives in another slot; run the fan-out against a
standalone Redis or keep the counters on their own node.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.redis import keys
from schemas.events import JobEvent

from .logic import RecordUpdate

LUA = r"""
local rec, log, dd = KEYS[1], KEYS[2], KEYS[3]
local source, attempt, seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local terminal, status, rank = ARGV[4] == '1', ARGV[5], tonumber(ARGV[6])
local etype, payload = ARGV[7], ARGV[8]
local maxlen, ttl, now = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local nset, nnx = tonumber(ARGV[12]), tonumber(ARGV[13])

local function drop(reason)
  redis.call('HINCRBY', dd, 'dropped', 1)
  redis.call('HINCRBY', dd, 'dropped:' .. reason, 1)
  redis.call('EXPIRE', dd, ttl)
  return {0, reason}
end

if redis.call('HEXISTS', rec, 'terminal_id') == 1 then return drop('after_terminal') end
local top = tonumber(redis.call('HGET', dd, 'attempt:' .. source) or '-1')
if attempt < top then return drop('stale_attempt') end
local seqf = 'seq:' .. source .. ':' .. attempt
local last = tonumber(redis.call('HGET', dd, seqf) or '-1')
if seq <= last then return drop('duplicate') end

redis.call('HSET', dd, seqf, seq)
if attempt > top then redis.call('HSET', dd, 'attempt:' .. source, attempt) end
local n = redis.call('HINCRBY', dd, 'n', 1)
redis.call('XADD', log, 'MAXLEN', maxlen, n .. '-0', 'type', etype, 'data', payload)

local i = 14
for _ = 1, nset do
  redis.call('HSET', rec, ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, nnx do
  redis.call('HSETNX', rec, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', rec, 'last_event_id', n, 'updated_at', now)
if rank >= 0 then
  local ranks = {queued = 0, running = 1, completed = 2, failed = 2, cancelled = 2}
  local current = ranks[redis.call('HGET', rec, 'status') or ''] or -1
  if rank > current then redis.call('HSET', rec, 'status', status) end
end
if terminal then
  redis.call('HSET', rec, 'terminal_id', n, 'terminal_type', etype)
  if #KEYS >= 4 and redis.call('HDEL', rec, 'slot_held') == 1 then
    if redis.call('DECR', KEYS[4]) < 0 then redis.call('INCR', KEYS[4]) end
  end
end
redis.call('EXPIRE', rec, ttl)
redis.call('EXPIRE', log, ttl)
redis.call('EXPIRE', dd, ttl)
return {n, redis.call('HGET', rec, 'webhook') or ''}
"""


@dataclass(frozen=True)
class Appended:
    """The event was recorded as replay entry ``event_id``."""

    event_id: int
    webhook: str | None


@dataclass(frozen=True)
class Dropped:
    """The event was not recorded: duplicate, stale_attempt or after_terminal."""

    reason: str


class FanoutScript:
    """Applies events to Redis; takes the client it talks to."""

    def __init__(self, redis: aioredis.Redis, *, replay_maxlen: int, ttl_s: int) -> None:
        self._redis = redis
        self._script = redis.register_script(LUA)
        self._maxlen = replay_maxlen
        self._ttl = ttl_s

    async def apply(self, event: JobEvent, payload: bytes, update: RecordUpdate, now: float) -> Appended | Dropped:
        """One event, one round trip (two for a terminal event)."""
        return (await self.apply_batch([(event, payload, update)], now))[0]

    async def apply_batch(
        self, items: list[tuple[JobEvent, bytes, RecordUpdate]], now: float
    ) -> list[Appended | Dropped | Exception]:
        """Events in order, pipelined: one round trip per batch, plus one when it holds terminals.

        Redis runs the script calls one after another in this order, so the outcome is exactly
        that of applying them one by one. A failing call gives its exception in its place.
        """
        slots = await self._slots([event.job_id for event, _, update in items if update.terminal])
        pipe = self._redis.pipeline(transaction=False)
        for event, payload, update in items:
            job = event.job_id
            script_keys = [keys.job_record(job), keys.replay_log(job), keys.dedupe(job)]
            if update.terminal and slots.get(job):
                script_keys.append(slots[job])
            args: list[str | bytes | int] = [
                event.source.value, event.attempt, event.seq,
                "1" if update.terminal else "0",
                update.status.value if update.status else "", update.rank,
                event.type, payload, self._maxlen, self._ttl, repr(now),
                len(update.fields), len(update.fields_if_absent),
            ]
            for name, value in (*update.fields.items(), *update.fields_if_absent.items()):
                args += [name, value]
            await self._script(keys=script_keys, args=args, client=pipe)
        replies = await pipe.execute(raise_on_error=False)
        return [_outcome(reply) for reply in replies]

    async def _slots(self, job_ids: list[str]) -> dict[str, str]:
        """The in-flight counter each job holds (written once at admission, so reading early is safe)."""
        if not job_ids:
            return {}
        unique = list(dict.fromkeys(job_ids))
        pipe = self._redis.pipeline(transaction=False)
        for job in unique:
            pipe.hget(keys.job_record(job), "slot")
        values = await pipe.execute()
        return {job: value.decode() for job, value in zip(unique, values) if value}


def _outcome(reply) -> Appended | Dropped | Exception:
    if isinstance(reply, Exception):
        return reply
    first, second = reply
    if first == 0:
        return Dropped(second.decode())
    return Appended(int(first), second.decode() or None)
