"""Every read and write of job state in Redis: admission, the fan-out's apply, the replay log, cancel
flags and in-flight accounting. Callers see `JobRecord`s and parsed events, never hash fields.

Admission is one Lua call that decides, in this order: the job id exists already (the caller
compares fingerprints), the tenant's in-flight count for the modality is at the bound, or the slot
is taken (the job id added to the tenant's in-flight set, below the bound) and the record is
written, marked ``unacked`` until the broker acknowledges the request (`acknowledged`). A publish
that timed out may still land, so its record is kept (the owner can see the job, and an identical
retry publishes it again instead of getting 409). The fan-out releases the slot on the job's first
terminal event.

In-flight accounting cannot leak: the count is the size of a set of job ids, not a counter, so it
can be checked against the records it names. `reconcile` (run by the streams process's reconciler,
streams/fanout/reconciler.py) drops members whose record expired or is terminal and hands back those
silent (no event) past their limit, so the reconciler can end, through `apply`, jobs that can no
longer end by themselves (`end_lost`).

The fan-out's apply is one Lua call per event: it deduplicates by (source, attempt, seq), drops
events of a superseded attempt, keeps only the first terminal event, appends to the bounded replay
log with the next entry id ``N-0`` (and publishes the entry on a channel named as the log, for
the gateways' shared readers: infra/redis/replay.py), updates the record (never moving its status backwards),
releases the in-flight slot on the terminal event (removes the job from its in-flight set), and
renews every expiry. When the
job has a webhook subscribed to the event's type (progress throttled per job), the same call adds a
delivery to the deployment's webhook outbox stream (`keys.webhook_outbox`, bounded), so a fan-out
that dies right after recording an event still owes, and a deliverer still makes, its delivery
(streams/fanout/outbox.py). Events of jobs without a webhook pay nothing more. Its keys are the
job's record, replay log and dedupe hash (one cluster slot, by hash tag) and, for terminal events
only, the in-flight set named in the record (``slot``). On Redis Cluster that set (and the
webhook outbox, and the index of in-flight sets that admission and `reconcile` touch) lives in
another slot; run against a standalone Redis or keep these keys on the job keys' node.

Which attempt is current does not depend on clocks: attempt numbers only need to be distinct
(workers take them from their own clocks, which may disagree). The attempt whose `started` the
fan-out recorded last is the current one, and recording a `started` of another attempt marks the
previous current attempt superseded (``gone:<attempt>`` in the dedupe hash): its later events
are dropped as ``stale_attempt``, whatever the source (the moderation gate's events carry the
worker's attempt). Events of an attempt that never started (a job that failed its checks on a new
worker) are not superseded and count. This works because a job's events share one partition (they
are keyed by job id), so the order the fan-out sees `started` events in is the order the attempts
began; a worker's clock running behind the dead one's no longer makes its every event stale.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from schemas.enums import ErrorCode, EventSource, EventType, JobStatus
from schemas.events import Failed, JobEvent, parse_event

from . import keys
from .jobrecord import JobRecord, RecordUpdate, record_update, video_meta_field
from .replay import RawEntry, ReplayReader, StoreReset

if TYPE_CHECKING:  # settings are read at each process's edge and handed in
    from infra.settings.streams import FanoutSettings, WebhookSettings

#: most entries read per Redis call while following a replay log
_BATCH = 256
#: longest one XREAD of a follower without a shared reader blocks (below the gateway's socket timeouts)
_OWN_BLOCK_MS = 1000

_RECONCILE = r"""
local held_set, index = KEYS[1], KEYS[2]
local now, queued_s, started_s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local before = tonumber(ARGV[4])
local live, out = 0, {}
for i = 3, #KEYS do
  local rec, job = KEYS[i], ARGV[i + 2]
  if redis.call('EXISTS', rec) == 0 or redis.call('HEXISTS', rec, 'terminal_id') == 1 then
    redis.call('ZREM', held_set, job)
    redis.call('HDEL', rec, 'slot_held')
  else
    live = live + 1
    local f = redis.call('HMGET', rec, 'status', 'updated_at', 'created_at', 'tenant')
    local admitted = tonumber(redis.call('ZSCORE', held_set, job)) or now
    local since = tonumber(f[2]) or tonumber(f[3]) or admitted
    local limit = started_s
    if (f[1] or 'queued') == 'queued' then limit = queued_s end
    if now - since > limit or (before and admitted < before) then
      table.insert(out, {job, f[1] or '', tostring(since), tostring(admitted), f[4] or ''})
    end
  end
end
if redis.call('ZCARD', held_set) == 0 then redis.call('SREM', index, held_set) end
return {live, out}
"""

_LEAD = r"""
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: the most a job's keys outlive their expiry while the job runs (`expiry_slack_s`)
_SLACK_MAX_S = 60
_SLACK_SHARE = 16


def expiry_slack_s(ttl_s: int) -> int:
    """How often (s) the fan-out pushes back the expiry of a running job's record, replay log and dedupe
    hash, and so how long past `ttl_s` after its last event they may live until it ends (at its end,
    exactly `ttl_s`): a sixteenth of the expiry, at most a minute (`_APPLY_ONE`)."""
    return min(_SLACK_MAX_S, ttl_s // _SLACK_SHARE)


#: one event into a job's record, dedupe hash and replay log (K: its keys, A: its arguments, built by
#: `_event_args`), with what every event of a call shares as upvalues (`maxlen`, `ttl`, `now`, `outbox`,
#: `outbox_maxlen`, `progress_ms`): the body of `_APPLY`, and of `_ADMIT` for a new job's first event.
#:
#: The three keys' expiry is pushed back at most once per `keep_s` (`expiry_slack_s`; the dedupe hash's
#: `kept` says when, by Redis's own clock, read once per call), to `ttl + keep_s`, and to `ttl` exactly at
#: the job's end: a key still lives `ttl` after the job's last event, and a token costs 6 calls instead
#: of 9. An EXPIRE is cheap; a call from Lua is not: a token took the script about 20 us (its commands
#: about 4.5), and about 0.8x of that without its three EXPIREs, the closure and the table it built each
#: time (bench/apply_cost.py, against the script before; docs/benchmarks.md)
_APPLY_ONE = r"""
local keep_s = math.min(%(max)d, math.floor(ttl / %(share)d))
local clock
local function redis_now()  -- seconds; once per call
  if not clock then clock = tonumber(redis.call('TIME')[1]) end
  return clock
end

local function drop(dd, reason)
  redis.call('HINCRBY', dd, 'dropped', 1)
  redis.call('HINCRBY', dd, 'dropped:' .. reason, 1)
  redis.call('EXPIRE', dd, ttl)
  return {0, reason}
end

local ranks = {queued = 0, running = 1, completed = 2, failed = 2, cancelled = 2}

local function apply(K, A)
  local rec, log, dd = K[1], K[2], K[3]
  local source, attempt, seq = A[1], tonumber(A[2]), tonumber(A[3])
  local terminal, status, rank = A[4] == '1', A[5], tonumber(A[6])
  local etype, payload = A[7], A[8]
  local nset, nnx, job = tonumber(A[9]), tonumber(A[10]), A[11]

  -- what the record and the dedupe hash hold, two reads; then one write to each (a token costs 6 calls)
  local i = 12 + 2 * nset
  local want = {'terminal_id', 'status', 'webhook'}
  for j = 1, nnx do want[3 + j] = A[i + 2 * j - 2] end
  local r = redis.call('HMGET', rec, unpack(want))
  if r[1] then return drop(dd, 'after_terminal') end
  local seqf = 'seq:' .. source .. ':' .. attempt
  local d = redis.call('HMGET', dd, 'gone:' .. A[2], seqf, 'current', 'n', 'kept')
  if d[1] then return drop(dd, 'stale_attempt') end
  if seq <= tonumber(d[2] or '-1') then return drop(dd, 'duplicate') end

  local n = tonumber(d[4] or '0') + 1
  local seen = {seqf, seq, 'n', n}
  if etype == 'started' then  -- this attempt is the current one; the one it supersedes is gone
    seen[#seen + 1], seen[#seen + 2] = 'current', A[2]
    if d[3] and d[3] ~= A[2] then seen[#seen + 1], seen[#seen + 2] = 'gone:' .. d[3], 1 end
  end
  local keep = terminal or keep_s < 1 or not d[5] or redis_now() - tonumber(d[5]) >= keep_s
  if keep then seen[#seen + 1], seen[#seen + 2] = 'kept', redis_now() end
  redis.call('HSET', dd, unpack(seen))
  redis.call('XADD', log, 'MAXLEN', maxlen, n .. '-0', 'type', etype, 'data', payload)
  redis.call('PUBLISH', log, n .. ' ' .. etype .. ' ' .. payload)  -- to the gateways following it (replay.py)

  local put, given = {}, {}
  for j = 12, i - 1, 2 do
    put[#put + 1], put[#put + 2] = A[j], A[j + 1]
    given[A[j]] = true
  end
  for j = 1, nnx do  -- set only where the record has none (and the event does not set it)
    local name = A[i + 2 * j - 2]
    if not r[3 + j] and not given[name] then
      put[#put + 1], put[#put + 2] = name, A[i + 2 * j - 1]
      given[name] = true
    end
  end
  put[#put + 1], put[#put + 2], put[#put + 3], put[#put + 4] = 'last_event_id', n, 'updated_at', now
  if rank >= 0 then
    if rank > (ranks[r[2] or ''] or -1) then put[#put + 1], put[#put + 2] = 'status', status end
  end
  if terminal then
    put[#put + 1], put[#put + 2], put[#put + 3], put[#put + 4] = 'terminal_id', n, 'terminal_type', etype
  end
  redis.call('HSET', rec, unpack(put))
  if terminal then
    redis.call('HDEL', rec, 'slot_held')
    -- a record admitted before in-flight sets named an integer counter: left to its own expiry
    if #K >= 4 and redis.call('TYPE', K[4])['ok'] == 'zset' then redis.call('ZREM', K[4], job) end
  end
  if keep then
    local expiry = terminal and ttl or ttl + keep_s
    redis.call('EXPIRE', rec, expiry)
    redis.call('EXPIRE', log, expiry)
    redis.call('EXPIRE', dd, expiry)
  end
  local hook = r[3] or ''
  if hook ~= '' and outbox ~= '' and (terminal or etype == 'progress') then
    local ok, spec = pcall(cjson.decode, hook)
    local wanted = false
    if ok and type(spec) == 'table' and type(spec['url']) == 'string' and type(spec['events']) == 'table' then
      for _, e in ipairs(spec['events']) do
        if e == etype then wanted = true end
      end
    end
    if wanted and etype == 'progress' and tonumber(progress_ms) > 0 then
      wanted = redis.call('SET', rec .. ':hook:progress', '1', 'NX', 'PX', progress_ms) ~= false
    end
    if wanted then
      redis.call('XADD', outbox, 'MAXLEN', '~', outbox_maxlen, '*', 'job', job, 'entry', n, 'type', etype,
        'tenant', redis.call('HGET', rec, 'tenant') or '', 'client', redis.call('HGET', rec, 'client_id') or job,
        'url', spec['url'], 'data', payload)
    end
  end
  return {n, hook}
end
""" % {"max": _SLACK_MAX_S, "share": _SLACK_SHARE}

#: admission. ARGV: max in flight, expiry, time, job id, fingerprint, tenant, recent jobs kept; what
#: `apply` shares (replay bound, webhook outbox and its bounds); the record's field count and fields; the
#: first event's argument count (0: none) and arguments, applied only when the job is admitted
_ADMIT = r"""
local rec, held_set, index, log, dd = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ttl, now = tonumber(ARGV[2]), ARGV[3]
local maxlen, outbox, outbox_maxlen, progress_ms = tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11]
local nf = tonumber(ARGV[12])
""" + _APPLY_ONE + r"""
if redis.call('EXISTS', rec) == 1 and redis.call('HGET', rec, 'error_code') == 'job_lost'
    and redis.call('HGET', rec, 'fingerprint') == ARGV[5] and redis.call('HGET', rec, 'tenant') == ARGV[6] then
  -- the same request again after the job was lost: a new run under the same id. Its log and
  -- numbering start over; which attempt is current (and which were superseded) is kept, so a
  -- worker of the lost run that wakes up is superseded by the new run's start.
  local stale = {}
  for _, f in ipairs(redis.call('HKEYS', dd)) do
    if f == 'n' or f == 'kept' or string.sub(f, 1, 4) == 'seq:' or string.sub(f, 1, 7) == 'dropped' then
      table.insert(stale, f)
    end
  end
  if #stale > 0 then redis.call('HDEL', dd, unpack(stale)) end
  redis.call('DEL', rec, log)
end
if redis.call('EXISTS', rec) == 1 then
  return {0, redis.call('HGET', rec, 'fingerprint') or '', redis.call('HGET', rec, 'tenant') or '',
          redis.call('HGET', rec, 'unacked') or ''}
end
local held = redis.call('ZCARD', held_set)
if held >= tonumber(ARGV[1]) then return {-1, tostring(held), ''} end
redis.call('ZADD', held_set, now, ARGV[4])
redis.call('SADD', index, held_set)
redis.call('HSET', rec, 'slot', held_set, 'slot_held', '1', unpack(ARGV, 13, 12 + nf))
redis.call('EXPIRE', rec, ttl)
-- the indexes the new job is listed in: its tenant's recent jobs (newest kept), its user's jobs
local recent, user = KEYS[6], KEYS[7]
if recent and recent ~= '' then
  redis.call('ZADD', recent, now, ARGV[4])
  redis.call('ZREMRANGEBYRANK', recent, 0, -tonumber(ARGV[7]) - 1)
  redis.call('EXPIRE', recent, ttl)
end
if user and user ~= '' then
  redis.call('SADD', user, ARGV[4])
  redis.call('EXPIRE', user, ttl)
end
-- its first event (the gateway's `accepted`): the first entry of its replay log, before anything is published
local na = tonumber(ARGV[13 + nf])
if na > 0 then apply({rec, log, dd}, {unpack(ARGV, 14 + nf, 13 + nf + na)}) end
return {1, '', ''}
"""


_APPLY = r"""
-- A batch of events, in order, in one call. ARGV[1..7]: the number of events, then what all of them
-- share (replay bound, expiry, time, webhook outbox and its bounds). Then per event: its key count, its
-- argument count, and its arguments (A below); KEYS holds each event's keys (K below), one event after
-- another. An event whose writes fail (a key of the wrong type) gives {-1, error} in its place and the
-- others still apply, as separate script calls would.
local maxlen, ttl, now = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local outbox, outbox_maxlen, progress_ms = ARGV[5], ARGV[6], ARGV[7]
""" + _APPLY_ONE + r"""
local out, ki, ai = {}, 1, 8
for e = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1])
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[ki + j - 1] end
  for j = 1, na do a[j] = ARGV[ai + 1 + j] end
  ki, ai = ki + nk, ai + 2 + na
  local ok, reply = pcall(apply, k, a)
  if ok then
    out[e] = reply
  elseif type(reply) == 'table' and reply.err then
    out[e] = {-1, reply.err}
  else
    out[e] = {-1, tostring(reply)}
  end
end
return out
"""


#: events per call of the apply script: a call runs alone in Redis (about 20 us an event here), so a
#: larger batch is applied in several calls rather than holding every other client for one long one
APPLY_CHUNK = 256


@dataclass(frozen=True)
class WebhookOutboxBounds:
    """Given to the fan-out's store: subscribed events of jobs with a webhook also go to the outbox."""

    maxlen: int = keys.WEBHOOK_OUTBOX_MAXLEN
    #: at most one progress delivery per job in this many seconds (0: every one)
    progress_interval_s: float = 5.0
    key: str = keys.webhook_outbox()


@dataclass(frozen=True)
class Admitted:
    """The record was written and an in-flight slot taken."""


@dataclass(frozen=True)
class Existing:
    """The job id is taken: by the same request when the fingerprint and tenant match. `unacked`:
    its request was never acknowledged by the broker (publish it again)."""

    fingerprint: str
    tenant: str
    unacked: bool = False


@dataclass(frozen=True)
class Full:
    """The tenant holds `held` slots of the modality, the bound."""

    held: int


@dataclass(frozen=True)
class Held:
    """A job that holds an in-flight slot and whose record is not terminal: its status, the time of
    its last recorded event (of its admission when none was recorded), and of its admission."""

    job_id: str
    status: JobStatus
    modality: str
    since: float
    admitted: float = 0.0
    tenant: str = ""


@dataclass(frozen=True)
class Reconciled:
    """A reconcile pass: how many jobs still hold a slot, and which of them are silent past their limit."""

    held: int
    lost: list[Held]


@dataclass(frozen=True)
class Appended:
    """The event was recorded as replay entry ``event_id``; `webhook` is the job's WebhookSpec JSON."""

    event_id: int
    webhook: str | None


@dataclass(frozen=True)
class Dropped:
    """The event was not recorded: duplicate, stale_attempt or after_terminal."""

    reason: str


@dataclass(frozen=True)
class Entry:
    """One replay log entry: its number, its event's type, and the exact JSON the fan-out stored.

    `event` parses that JSON on first use, once; a reader that only relays the bytes (the job SSE
    and WebSocket) never pays for it.
    """

    id: int
    type: EventType
    data: bytes

    @cached_property
    def event(self) -> JobEvent:
        return parse_event(self.data)

    @property
    def terminal(self) -> bool:
        return self.type.terminal


class ReplayExpired(Exception):
    def __init__(self, after: int, first: int | None) -> None:
        kept = f"the log now starts at {first}" if first else "the log has expired"
        super().__init__(
            f"events after {after} are no longer kept ({kept}): fetch GET /v1/jobs/{{id}} for the"
            " job's state, or reconnect without Last-Event-ID to follow from the oldest event kept"
        )


#: the seq of `lost_entry`'s event: the gateway's own events are accepted (0) and cancelled while queued (1),
#: so a client that tells events apart by (source, attempt, seq) never takes it for one of those
LOST_SEQ = 2
#: why a followed job ended with `lost_entry`
LOST_MESSAGE = ("Redis lost this job's record and events (it restarted without persistence, or was flushed), so"
                " its outcome cannot be told: submit it again")


def lost_entry(job_id: str, number: int) -> Entry:
    """What a follower gets in place of the rest of a job whose record Redis lost: a retryable `failed`
    (numbered after the last entry it had; it is not in any log, and the job's routes now answer 404)."""
    event = Failed(job_id=job_id, seq=LOST_SEQ, source=EventSource.GATEWAY, code=ErrorCode.BACKEND_UNAVAILABLE,
                   message=LOST_MESSAGE, retryable=True)
    return Entry(number, EventType.FAILED, event.model_dump_json().encode())


def _entry_number(stream_id: bytes) -> int:
    return int(stream_id.split(b"-", 1)[0])


def _entry(stream_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(_entry_number(stream_id), EventType(fields[b"type"].decode()), fields[b"data"])


class JobStore:
    """Job state in Redis; takes the client it talks to and the bounds it writes with."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        job_ttl_s: int = keys.JOB_TTL_S,
        replay_maxlen: int = keys.REPLAY_MAXLEN,
        cancel_ttl_s: int = keys.CANCEL_TTL_S,
        webhook_outbox: WebhookOutboxBounds | None = None,
        replay: ReplayReader | None = None,
    ) -> None:
        self._redis = redis
        self._replay = replay
        self._admit = redis.register_script(_ADMIT)
        self._apply = redis.register_script(_APPLY)
        self._reconcile = redis.register_script(_RECONCILE)
        self._lead = redis.register_script(_LEAD)
        self._job_ttl = job_ttl_s
        self._maxlen = replay_maxlen
        self._cancel_ttl = cancel_ttl_s
        hooks = webhook_outbox
        self._outbox_args = (
            [hooks.key, hooks.maxlen, int(hooks.progress_interval_s * 1000)] if hooks else ["", 0, 0]
        )

    # -- admission (the gateway) --

    async def admit(self, job_id: str, record: JobRecord, *, max_inflight: int, now: float | None = None,
                    first: tuple[JobEvent, bytes] | None = None) -> Admitted | Existing | Full:
        """Create the record once (idempotency) and take a slot of its tenant and modality, atomically,
        in one round trip; a new job is also listed among its tenant's recent jobs (`recent_jobs`) and,
        when it names a user, that user's (`user_job_ids`, for erasure).

        `first` (an event and its payload, not a terminal one): applied as by `apply`, in the same call,
        when and only when the job is admitted: the gateway's `accepted`, the first entry of the replay log,
        without a round trip of its own before the request is published.

        The one exception to "once": the same request (tenant and fingerprint) of a job that ended
        `job_lost` is admitted again as a new run under the same id, as that error advises."""
        fields: list[str | bytes | int] = []
        for name, value in record.to_fields().items():
            fields += [name, value]
        event_args: list[str | bytes | int] = []
        if first is not None:
            update = record_update(first[0])
            if update.terminal:
                raise ValueError("admission applies a first event, never a terminal one")
            event_args = _event_args(*first, update)
        args: list[str | bytes | int] = [
            max_inflight, self._job_ttl, repr(time.time() if now is None else now), job_id, record.fingerprint or "",
            record.tenant or "", self.RECENT_KEPT, self._maxlen, *self._outbox_args, len(fields), *fields,
            len(event_args), *event_args]
        held = keys.inflight(record.tenant, record.modality)
        script_keys = [keys.job_record(job_id), held, keys.inflight_index(), keys.replay_log(job_id),
                       keys.dedupe(job_id), keys.tenant_jobs(record.tenant) if record.tenant else "",
                       keys.user_jobs(record.tenant, record.user) if record.tenant and record.user else ""]
        kind, a, b, *unacked = await self._admit(keys=script_keys, args=args)
        if kind == 1:
            return Admitted()
        if kind == 0:
            return Existing(a.decode(), b.decode(), unacked == [b"1"])
        return Full(int(a))

    #: most jobs the tenant's recent-jobs index keeps (GET /v1/jobs lists from it)
    RECENT_KEPT = 1000

    async def recent_jobs(self, tenant: str, limit: int) -> list[tuple[str, JobRecord]]:
        """The tenant's newest jobs whose records still exist, newest first, at most `limit`."""
        key = keys.tenant_jobs(tenant)
        ids = [m.decode() for m in await self._redis.zrevrange(key, 0, limit - 1)]
        records = [await self.load(job_id) for job_id in ids]
        gone = [job_id for job_id, record in zip(ids, records) if record is None]
        if gone:
            await self._redis.zrem(key, *gone)
        return [(job_id, record) for job_id, record in zip(ids, records) if record is not None]

    async def user_job_ids(self, tenant: str, user: str) -> list[str]:
        return sorted(m.decode() for m in await self._redis.smembers(keys.user_jobs(tenant, user)))

    async def acknowledged(self, job_id: str) -> None:
        """The broker acknowledged the job's request: a retry with its id no longer publishes it."""
        await self._redis.hdel(keys.job_record(job_id), "unacked")

    async def inflight(self, tenant: str, modality: str) -> int:
        """The tenant's admitted jobs of the modality that are not terminal yet."""
        return int(await self._redis.zcard(keys.inflight(tenant, modality)))

    async def inflight_total(self) -> int:
        """Every tenant's admitted jobs of every modality that are not terminal yet (two round trips)."""
        held_sets = [raw.decode() for raw in await self._redis.smembers(keys.inflight_index())]
        if not held_sets:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for name in held_sets:
            pipe.zcard(name)
        return sum(int(n) for n in await pipe.execute())

    # -- reconciling in-flight slots with job records (the streams process's reconciler) --

    async def lead(self, holder: str, ttl_s: float) -> bool:
        """Take or renew the reconciler's lock for `ttl_s`: True while `holder` is the one acting."""
        return bool(await self._lead(keys=[keys.reconciler_lock()], args=[holder, max(1, int(ttl_s * 1000))]))

    async def reconcile(self, now: float, limits: Callable[[str], tuple[float, float]],
                        admitted_before: float | None = None) -> Reconciled:
        """Drop in-flight members whose record expired or is terminal (their slots come back), and
        find the jobs still holding a slot that are silent past their limit: `limits(modality)` gives
        the seconds allowed without an event to a queued and to a started job. With
        `admitted_before`, jobs admitted before that time are candidates too, however recent.

        Three round trips however many sets; only candidates come back, so a sweep over many
        healthy jobs parses little.
        """
        held_sets = sorted(raw.decode() for raw in await self._redis.smembers(keys.inflight_index()))
        if not held_sets:
            return Reconciled(0, [])
        pipe = self._redis.pipeline(transaction=False)
        for held_set in held_sets:
            pipe.zrange(held_set, 0, -1)
        members = [[job.decode() for job in jobs] for jobs in await pipe.execute()]
        pipe = self._redis.pipeline(transaction=False)
        for held_set, jobs in zip(held_sets, members):
            queued_s, started_s = limits(held_set.rsplit(":", 1)[1])
            args = [repr(now), repr(queued_s), repr(started_s), "" if admitted_before is None else repr(admitted_before)]
            await self._reconcile(keys=[held_set, keys.inflight_index(), *map(keys.job_record, jobs)],
                                  args=[*args, *jobs], client=pipe)
        live, lost = 0, []
        for held_set, (count, candidates) in zip(held_sets, await pipe.execute()):
            live += int(count)
            modality = held_set.rsplit(":", 1)[1]
            for job, status, since, admitted, tenant in candidates:
                lost.append(Held(job.decode(), JobStatus(status.decode() or "queued"), modality, float(since),
                                 float(admitted), tenant.decode()))
        return Reconciled(live, lost)

    async def end_lost(self, job_id: str, message: str, now: float) -> Appended | Dropped:
        """End a job that can no longer end by itself with a retryable `failed` (job_lost), applied
        like every event: exactly one terminal event, its webhook owed, its slot released; a late
        real terminal event after it is dropped. Source `reconciler` (its own dedupe sequence: the stream
        processors' `accepted`, `prepared` or cached answer of the job never make it look like a repeat),
        attempt 0: no worker's attempt is 0 (theirs are clock milliseconds), so a superseded attempt never
        hides it."""
        event = Failed(job_id=job_id, seq=0, attempt=0, source=EventSource.RECONCILER, ts=now,
                       code=ErrorCode.JOB_LOST, message=message, retryable=True)
        return await self.apply(event, event.model_dump_json().encode(), now)

    # -- reads --

    async def load(self, job_id: str) -> JobRecord | None:
        raw = await self._redis.hgetall(keys.job_record(job_id))
        return JobRecord.from_fields(raw) if raw else None

    async def keep_video_meta(self, job_id: str, meta: dict[str, str | None]) -> None:
        """Keep what OpenAI's video object shows before the MP4 exists, beside the record (first write wins)."""
        name, value = video_meta_field(meta)
        await self._redis.hsetnx(keys.job_record(job_id), name, value)

    # -- cancel --

    async def flag_cancel(self, job_id: str, tenant: str) -> bool:
        """True for the first call: a second cancel of the job publishes nothing."""
        return bool(await self._redis.set(keys.cancel_flag(job_id), tenant, nx=True, ex=self._cancel_ttl))

    async def clear_cancel(self, job_id: str) -> None:
        """Forget a cancel flag whose cancel could not be published, so the next try publishes."""
        await self._redis.delete(keys.cancel_flag(job_id))

    # -- the fan-out --

    async def apply(self, event: JobEvent, payload: bytes, now: float) -> Appended | Dropped:
        """One event, one round trip (two for a terminal event)."""
        outcome = (await self.apply_batch([(event, payload)], now))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def apply_batch(self, items: list[tuple[JobEvent, bytes]], now: float) -> list[Appended | Dropped | Exception]:
        """Events in order, in one script call per `APPLY_CHUNK` events (plus one round trip when the
        batch holds terminals): the outcome is exactly that of applying them one by one. An event whose
        writes fail gives its exception in its place; the others still apply."""
        updates = [record_update(event) for event, _ in items]  # hot loop: one pass over the batch
        slots = await self._slots([event.job_id for (event, _), update in zip(items, updates) if update.terminal])
        replies: list = []
        for first in range(0, len(items), APPLY_CHUNK):
            chunk = list(zip(items[first:first + APPLY_CHUNK], updates[first:first + APPLY_CHUNK]))
            script_keys: list[str] = []
            args: list[str | bytes | int] = [len(chunk), self._maxlen, self._job_ttl, repr(now), *self._outbox_args]
            for (event, payload), update in chunk:
                job = event.job_id
                script_keys += (keys.job_record(job), keys.replay_log(job), keys.dedupe(job))
                slot = slots.get(job) if update.terminal else None
                if slot:
                    script_keys.append(slot)
                event_args = _event_args(event, payload, update)
                args += (4 if slot else 3, len(event_args), *event_args)
            # by hash; redis-py's Script loads it again and retries when Redis answers NOSCRIPT (a restart, a flush)
            replies += await self._apply(keys=script_keys, args=args)
        return [_outcome(reply) for reply in replies]

    async def _slots(self, job_ids: list[str]) -> dict[str, str]:
        """The in-flight set each job counts in (written once at admission, so reading early is safe)."""
        if not job_ids:
            return {}
        unique = list(dict.fromkeys(job_ids))
        pipe = self._redis.pipeline(transaction=False)
        for job in unique:
            pipe.hget(keys.job_record(job), "slot")
        values = await pipe.execute()
        return {job: value.decode() for job, value in zip(unique, values) if value}

    # -- the replay log --

    async def opened(self, job_ids: list[str]) -> set[str]:
        """The jobs of `job_ids` whose replay log has an entry already (their record names the newest)."""
        if not job_ids:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for job in job_ids:
            pipe.hexists(keys.job_record(job), "last_event_id")
        return {job for job, found in zip(job_ids, await pipe.execute()) if found}

    async def entries(self, job_id: str) -> list[Entry]:
        """Every entry the replay log still keeps, oldest first."""
        return [_entry(i, fields) for i, fields in await self._redis.xrange(keys.replay_log(job_id))]

    async def follow(self, job_id: str, record: JobRecord, after: int | None, block_ms: int) -> AsyncIterator[Entry | None]:
        """Entries after `after`, in order, ending with the terminal one; None after each idle block.

        With a ReplayReader (the gateway's), the entries come from its one shared XREAD; without,
        each follower blocks on its own XREAD.

        Without a cursor the stream starts at the oldest entry kept. Entry numbers are consecutive,
        so a gap after an explicit cursor means the log was trimmed past it: ReplayExpired.

        When Redis loses its data meanwhile (the reader's StoreReset) and the job's record is gone or
        is not the one admitted (the fan-out rebuilt a partial one from later events), the job ends
        for this follower with `lost_entry`: a retryable `failed`, never a wait without end.
        """
        if record.terminal_id and after is not None and after >= record.terminal_id:
            return
        log_key = keys.replay_log(job_id)
        if (after or 0) < record.last_event_id:
            first = await self._redis.xrange(log_key, count=1)
            first_id = _entry_number(first[0][0]) if first else None
            if after is None and first_id is not None:
                after = first_id - 1
            elif first_id is None or first_id > (after or 0) + 1:
                raise ReplayExpired(after or 0, first_id)
        cursor = after or 0
        while True:
            raws = self._shared(log_key, cursor, block_ms) if self._replay is not None else self._own(log_key, cursor,
                                                                                                       block_ms)
            try:
                async for raw in raws:
                    if raw is None:
                        yield None
                        continue
                    stream_id, fields = raw
                    number = _entry_number(stream_id)
                    if number != cursor + 1:
                        raise ReplayExpired(cursor, number)
                    cursor = number
                    entry = _entry(stream_id, fields)
                    yield entry
                    if entry.terminal:
                        return
            except StoreReset:
                now = await self.load(job_id)
                if now is None or now.fingerprint != record.fingerprint or now.tenant != record.tenant:
                    yield lost_entry(job_id, cursor + 1)
                    return
                # the record survived (a persistent Redis): follow on from the same cursor
            finally:
                await raws.aclose()

    async def _shared(self, log_key: str, cursor: int, block_ms: int) -> AsyncIterator[RawEntry | None]:
        """Through the process's one ReplayReader: no connection of its own."""
        sub = await self._replay.open(log_key, cursor)
        try:
            while True:
                yield await sub.get(block_ms / 1000)
        finally:
            sub.close()

    async def _own(self, log_key: str, cursor: int, block_ms: int) -> AsyncIterator[RawEntry | None]:
        """One blocking XREAD at a time on a pooled connection (a store without a reader; the gateway's
        `replay_reader=per_stream`). Each blocks at most `_OWN_BLOCK_MS`, within the client's socket timeout."""
        idle_since = time.monotonic()
        while True:
            reply = await self._redis.xread({log_key: f"{cursor}-0"}, count=_BATCH, block=min(block_ms, _OWN_BLOCK_MS))
            if not reply:
                if time.monotonic() - idle_since >= block_ms / 1000:
                    idle_since = time.monotonic()
                    yield None
                continue
            for raw in reply[0][1]:
                cursor = _entry_number(raw[0])
                yield raw
            idle_since = time.monotonic()


def event_store(redis: aioredis.Redis, fanout: FanoutSettings, webhooks: WebhookSettings) -> JobStore:
    """The store that applies events as the fan-out does (its replay bound, job expiry and, when
    webhooks are on, the outbox): the fan-out's, the reconciler's and the local stack's."""
    bounds = WebhookOutboxBounds(webhooks.outbox_maxlen, webhooks.progress_interval_s) if webhooks.master() else None
    return JobStore(redis, replay_maxlen=fanout.replay_maxlen, job_ttl_s=fanout.job_ttl_s, webhook_outbox=bounds)


def _event_args(event: JobEvent, payload: bytes, update: RecordUpdate) -> list[str | bytes | int]:
    """The arguments of the Lua `apply` for one event (A in `_APPLY_ONE`)."""
    fields = (*update.fields.items(), *update.fields_if_absent.items())
    args: list[str | bytes | int] = [
        event.source.value, event.attempt, event.seq, "1" if update.terminal else "0",
        update.status.value if update.status else "", update.rank, event.type.value, payload, len(update.fields),
        len(update.fields_if_absent), event.job_id]
    for name, value in fields:
        args += (name, value)
    return args


def _outcome(reply) -> Appended | Dropped | Exception:
    first, second = reply
    if first == -1:  # the event's writes failed (the script's own pcall): as a call of its own would
        return ResponseError(second.decode())
    if first == 0:
        return Dropped(second.decode())
    return Appended(int(first), second.decode() or None)
