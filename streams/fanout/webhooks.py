"""Webhook delivery: signed POSTs of job events, retried, at most once per event, off the hot path."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
from pydantic import ValidationError

from infra.redis import keys
from schemas.requests import WebhookSpec

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Genloom-Signature"
EVENT_ID_HEADER = "X-Genloom-Event-Id"
EVENT_TYPE_HEADER = "X-Genloom-Event-Type"

#: statuses after which retrying the same request cannot help (other 4xx are the receiver's answer)
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def sign(secret: bytes, body: bytes) -> str:
    """The X-Genloom-Signature value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver runs: constant-time check of a signature header."""
    return hmac.compare_digest(sign(secret, body), header)


def event_id(job_id: str, entry: int) -> str:
    """The X-Genloom-Event-Id: stable per job and replay entry, so receivers can dedupe too."""
    return f"{job_id}:{entry}"


def target_for(spec_json: str | None, event_type: str) -> WebhookSpec | None:
    """The webhook an event goes to, or None (no webhook, filtered out, or unreadable spec)."""
    if not spec_json:
        return None
    try:
        spec = WebhookSpec.model_validate_json(spec_json)
    except ValidationError:
        log.warning("unreadable webhook spec in a job record: %.200s", spec_json)
        return None
    return spec if event_type in spec.events else None


def backoff(attempts: int, base_s: float, max_s: float) -> Iterator[float]:
    """Waits between tries: base, 2*base, 4*base, ... capped (attempts - 1 values)."""
    for k in range(attempts - 1):
        yield min(base_s * 2**k, max_s)


def should_retry(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_4XX


@dataclass(frozen=True)
class Delivery:
    job_id: str
    entry: int
    event_type: str
    url: str
    body: bytes


class WebhookDispatcher:
    """Runs deliveries as background tasks, bounded in number and concurrency.

    `offer` never waits: the fan-out agent hands a delivery over and moves on. Redis markers make
    a successful delivery happen at most once per (job, entry) across fan-out instances.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        http: httpx.AsyncClient,
        *,
        secret: bytes,
        max_attempts: int,
        backoff_s: float,
        backoff_max_s: float,
        progress_interval_s: float,
        max_pending: int,
        concurrency: int,
        mark_ttl_s: int,
    ) -> None:
        self._redis = redis
        self._http = http
        self._secret = secret
        self._attempts = max_attempts
        self._backoff = (backoff_s, backoff_max_s)
        self._progress_ms = int(progress_interval_s * 1000)
        self._max_pending = max_pending
        self._slots = asyncio.Semaphore(concurrency)
        self._mark_ttl = mark_ttl_s
        self._tasks: set[asyncio.Task] = set()
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def offer(self, delivery: Delivery) -> bool:
        """Schedule a delivery; False (and a log line) when the bound is reached."""
        if len(self._tasks) >= self._max_pending:
            self.dropped += 1
            log.error(
                "webhook queue full (%d pending): dropped %s event %d of job %s",
                len(self._tasks), delivery.event_type, delivery.entry, delivery.job_id,
            )
            return False
        task = asyncio.create_task(self._run(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, delivery: Delivery) -> None:
        try:
            await self.deliver(delivery)
        except Exception:
            log.exception("webhook delivery of job %s entry %d crashed", delivery.job_id, delivery.entry)

    async def deliver(self, d: Delivery) -> bool:
        """Claim, POST with retries, mark. True when the receiver answered 2xx."""
        if d.event_type == "progress" and self._progress_ms > 0:
            gate = await self._redis.set(keys.webhook_progress_gate(d.job_id), b"1", nx=True, px=self._progress_ms)
            if not gate:
                return False
        mark = keys.webhook_mark(d.job_id, d.entry)
        if not await self._redis.set(mark, b"claimed", nx=True, ex=keys.WEBHOOK_CLAIM_TTL_S):
            return False  # delivered already, or another deliverer holds it
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, d.body),
            EVENT_ID_HEADER: event_id(d.job_id, d.entry),
            EVENT_TYPE_HEADER: d.event_type,
        }
        waits = backoff(self._attempts, *self._backoff)
        for attempt in range(1, self._attempts + 1):
            status = await self._post(d, headers)
            if status is not None and 200 <= status < 300:
                await self._redis.set(mark, b"delivered", ex=self._mark_ttl)
                return True
            if status is not None and not should_retry(status):
                log.warning("webhook %s answered %d for job %s: not retried", d.url, status, d.job_id)
                break
            wait = next(waits, None)
            if wait is None:
                break
            # the claim must outlive the wait, or a second deliverer could start meanwhile
            await self._redis.expire(mark, int(wait) + keys.WEBHOOK_CLAIM_TTL_S)
            await asyncio.sleep(wait)
        log.error("webhook %s for job %s entry %d not delivered after %d tries", d.url, d.job_id, d.entry, attempt)
        await self._redis.delete(mark)
        return False

    async def _post(self, d: Delivery, headers: dict[str, str]) -> int | None:
        async with self._slots:
            try:
                response = await self._http.post(d.url, content=d.body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("webhook %s for job %s failed: %s", d.url, d.job_id, exc)
                return None
        return response.status_code

    async def close(self, timeout: float = 5.0) -> None:
        """Let running deliveries finish for up to `timeout`, then cancel the rest."""
        if self._tasks:
            _, still = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in still:
                task.cancel()
