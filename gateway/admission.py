"""Admission: create the job record once (idempotency) and take an in-flight slot, atomically.

One Lua call decides, in this order: the job id exists already (the caller compares fingerprints),
the tenant's in-flight count for the modality is at the bound (429), or the slot is taken (INCR
below the bound) and the record is written. The fan-out releases the slot on the job's first
terminal event; `rollback` releases it when publishing failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.redis import keys

_ADMIT = r"""
local rec, counter = KEYS[1], KEYS[2]
if redis.call('EXISTS', rec) == 1 then
  return {0, redis.call('HGET', rec, 'fingerprint') or '', redis.call('HGET', rec, 'tenant') or ''}
end
local held = tonumber(redis.call('GET', counter) or '0')
if held >= tonumber(ARGV[1]) then return {-1, tostring(held), ''} end
redis.call('INCR', counter)
redis.call('EXPIRE', counter, ARGV[3])
redis.call('HSET', rec, 'slot', counter, 'slot_held', '1', unpack(ARGV, 4))
redis.call('EXPIRE', rec, ARGV[2])
return {1, '', ''}
"""

_ROLLBACK = r"""
local rec, counter = KEYS[1], KEYS[2]
if redis.call('HGET', rec, 'fingerprint') ~= ARGV[1] then return 0 end
if redis.call('HDEL', rec, 'slot_held') == 1 then
  if redis.call('DECR', counter) < 0 then redis.call('INCR', counter) end
end
redis.call('DEL', rec)
return 1
"""


@dataclass(frozen=True)
class Admitted:
    pass


@dataclass(frozen=True)
class Existing:
    fingerprint: str
    tenant: str


@dataclass(frozen=True)
class Full:
    held: int


class Admission:
    def __init__(self, redis: aioredis.Redis, *, max_inflight: int, job_ttl_s: int, inflight_ttl_s: int) -> None:
        self._admit = redis.register_script(_ADMIT)
        self._rollback = redis.register_script(_ROLLBACK)
        self._max = max_inflight
        self._job_ttl = job_ttl_s
        self._inflight_ttl = inflight_ttl_s

    async def admit(self, job_id: str, tenant: str, modality: str, record: dict[str, str]) -> Admitted | Existing | Full:
        args: list[str | int] = [self._max, self._job_ttl, self._inflight_ttl]
        for name, value in record.items():
            args += [name, value]
        kind, a, b = await self._admit(keys=[keys.job_record(job_id), keys.inflight(tenant, modality)], args=args)
        if kind == 1:
            return Admitted()
        if kind == 0:
            return Existing(a.decode(), b.decode())
        return Full(int(a))

    async def rollback(self, job_id: str, tenant: str, modality: str, fingerprint: str) -> bool:
        done = await self._rollback(
            keys=[keys.job_record(job_id), keys.inflight(tenant, modality)], args=[fingerprint]
        )
        return bool(done)
