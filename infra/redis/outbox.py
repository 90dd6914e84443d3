"""The webhook outbox in Redis: a stream of deliveries owed (written by the fan-out's apply script,
infra/redis/jobstore.py), read by the deliverers' consumer group, and per-delivery markers that make
a successful POST happen once even when two deliverers hold the same entry.

An entry stays in the group's pending list until a deliverer acknowledges it (after a 2xx or a
final give-up); one that a dead deliverer left is taken over with XAUTOCLAIM after it has been idle
long enough. Delivery is therefore at least once: a deliverer that dies after the receiver answered
2xx but before it marked the delivery lets a second deliverer post it again, with the same
X-Genloom-Event-Id for the receiver to drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from . import keys


@dataclass(frozen=True)
class OutboxEntry:
    """One delivery owed: which job event (by internal job id), whose, where to, and the event's exact
    JSON as recorded; `client_job_id` is the id the tenant knows the job by."""

    id: str
    job_id: str
    entry: int
    event_type: str
    tenant: str
    url: str
    body: bytes
    client_job_id: str = ""

    @property
    def shown_job_id(self) -> str:
        return self.client_job_id or self.job_id


class Claim(StrEnum):
    """What `claim` found."""

    #: this deliverer may post now
    TAKEN = "taken"
    #: another deliverer is posting it (its claim expires if it died)
    BUSY = "busy"
    #: delivered or given up already: only the acknowledgement is left
    SETTLED = "settled"


def _entry(stream_id: bytes, fields: dict[bytes, bytes]) -> OutboxEntry | None:
    try:
        return OutboxEntry(
            id=stream_id.decode(), job_id=fields[b"job"].decode(), entry=int(fields[b"entry"]),
            event_type=fields[b"type"].decode(), tenant=fields[b"tenant"].decode(), url=fields[b"url"].decode(),
            body=fields[b"data"], client_job_id=fields.get(b"client", b"").decode(),
        )
    except (KeyError, ValueError):
        return None


class WebhookOutbox:
    def __init__(self, redis: aioredis.Redis, *, claim_ttl_s: int = keys.WEBHOOK_CLAIM_TTL_S,
                 mark_ttl_s: int = keys.WEBHOOK_MARK_TTL_S, key: str | None = None) -> None:
        self._redis = redis
        self._key = key or keys.webhook_outbox()
        self._claim_ttl = claim_ttl_s
        self._mark_ttl = mark_ttl_s

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        try:
            await self._redis.xgroup_create(self._key, keys.WEBHOOK_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[OutboxEntry]:
        """Entries no deliverer has seen yet (now pending on `consumer`)."""
        reply = await self._redis.xreadgroup(keys.WEBHOOK_GROUP, consumer, {self._key: ">"}, count=count,
                                             block=block_ms)
        return await self._parse(reply[0][1] if reply else [])

    async def take_over(self, consumer: str, min_idle_ms: int, count: int,
                        start: str = "0-0") -> tuple[str, list[OutboxEntry]]:
        """Entries pending longer than `min_idle_ms` on any deliverer (one that died, or deferred
        ones), scanning the pending list from `start`; also the cursor for the next call ("0-0"
        once the scan went round)."""
        reply = await self._redis.xautoclaim(self._key, keys.WEBHOOK_GROUP, consumer, min_idle_ms, start,
                                             count=count)
        cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return cursor, await self._parse(reply[1])

    async def _parse(self, items) -> list[OutboxEntry]:
        entries, broken = [], []
        for stream_id, fields in items:
            if fields is None:
                continue  # trimmed while pending
            entry = _entry(stream_id, fields)
            if entry is None:
                broken.append(stream_id)
            else:
                entries.append(entry)
        if broken:
            await self.ack(*broken)
        return entries

    async def ack(self, *ids: str | bytes) -> None:
        await self._redis.xack(self._key, keys.WEBHOOK_GROUP, *ids)

    async def beat(self, consumer: str, now: float) -> None:
        """The deliverer `consumer` is running (read by the gateway's /readyz)."""
        await self._redis.zadd(keys.webhook_deliverers(), {consumer: now})

    async def live_deliverers(self, now: float, within_s: float) -> int:
        """Deliverers that reported in the last `within_s` seconds; forgets those silent ten times longer."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(keys.webhook_deliverers(), "-inf", now - 10 * within_s)
        pipe.zcount(keys.webhook_deliverers(), now - within_s, "+inf")
        return int((await pipe.execute())[1])

    async def pending(self) -> int:
        """Entries read by some deliverer and not acknowledged yet."""
        return int((await self._redis.xpending(self._key, keys.WEBHOOK_GROUP))["pending"])

    # -- per-delivery markers --

    async def claim(self, entry: OutboxEntry) -> Claim:
        mark = keys.webhook_mark(entry.job_id, entry.entry)
        if await self._redis.set(mark, b"claimed", nx=True, ex=self._claim_ttl):
            return Claim.TAKEN
        return Claim.BUSY if await self._redis.get(mark) == b"claimed" else Claim.SETTLED

    async def hold(self, entry: OutboxEntry, seconds: float) -> None:
        """Keep this deliverer's claim for `seconds` more (a retry wait) plus the claim time."""
        await self._redis.expire(keys.webhook_mark(entry.job_id, entry.entry), int(seconds) + self._claim_ttl)

    async def settle(self, entry: OutboxEntry, delivered: bool) -> None:
        """Mark the delivery done (``delivered`` or ``given_up``) and acknowledge its entry."""
        mark = keys.webhook_mark(entry.job_id, entry.entry)
        await self._redis.set(mark, b"delivered" if delivered else b"given_up", ex=self._mark_ttl)
        await self.ack(entry.id)
