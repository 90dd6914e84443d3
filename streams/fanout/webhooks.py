"""Webhook delivery: signed POSTs of job events to checked, pinned addresses, retried, bounded per
tenant, off the fan-out's hot path. What is owed comes from the Redis outbox (outbox.py)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from infra.metrics import WEBHOOK_DELIVERIES
from infra.net.signing import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign, tenant_secret
from infra.net.ssrf import Refused, TargetPolicy, Unresolved
from infra.redis.outbox import Claim, OutboxEntry, WebhookOutbox
from schemas.events import as_shown_to

log = logging.getLogger(__name__)

#: statuses after which retrying the same request cannot help (other 4xx are the receiver's answer)
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def event_id(job_id: str, entry: int) -> str:
    """The X-Genloom-Event-Id: stable per job and replay entry, so receivers can dedupe too."""
    return f"{job_id}:{entry}"


def backoff(attempts: int, base_s: float, max_s: float) -> Iterator[float]:
    """Waits between tries: base, 2*base, 4*base, ... capped (attempts - 1 values)."""
    for k in range(attempts - 1):
        yield min(base_s * 2**k, max_s)


def should_retry(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_4XX


def new_http_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The deliverer's client: no proxies from the environment (they would undo the pinning), no
    redirects, no kept-alive connections (one kept for one host name must not serve another's SNI)."""
    return httpx.AsyncClient(trust_env=False, follow_redirects=False, verify=verify,
                             limits=httpx.Limits(max_keepalive_connections=0))


class WebhookSender:
    """One attempt: check the URL (again), POST to the checked IP with the original Host and SNI,
    read at most `max_response_bytes` of the answer, all within `deadline_s`."""

    def __init__(self, http: httpx.AsyncClient, policy: TargetPolicy, *, deadline_s: float,
                 max_response_bytes: int) -> None:
        self._http = http
        self._policy = policy
        self._deadline = deadline_s
        self._max_bytes = max_response_bytes

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """The receiver's status. Raises Refused (the URL may not be called), TimeoutError (past the
        deadline) or httpx.HTTPError (the transport failed)."""
        async with asyncio.timeout(self._deadline):
            target = await self._policy.check(url)
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            async with self._http.stream("POST", target.pinned_url, content=body, extensions=extensions,
                                         headers={**headers, "Host": target.host_header}) as response:
                read = 0
                async for chunk in response.aiter_raw():  # raw: a compressed bomb is not inflated
                    read += len(chunk)
                    if read >= self._max_bytes:
                        break  # the rest is never read: the connection is closed with the stream
                return response.status_code


@dataclass
class _Tenant:
    pending: int
    slots: asyncio.Semaphore


class WebhookDispatcher:
    """Runs deliveries as background tasks, bounded overall and per tenant.

    `offer` never waits: it takes a delivery (True) or declines it because the process or the
    tenant holds as many as allowed (False; the outbox entry stays pending and is taken up again
    later). One tenant's slow receiver fills that tenant's slots only. Markers in Redis make a
    successful POST happen once per event across deliverers.
    """

    def __init__(
        self,
        outbox: WebhookOutbox,
        sender: WebhookSender,
        *,
        master: bytes,
        max_attempts: int,
        backoff_s: float,
        backoff_max_s: float,
        max_pending: int,
        concurrency: int,
        tenant_max_pending: int,
        tenant_concurrency: int,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._master = master
        self._attempts = max_attempts
        self._backoff = (backoff_s, backoff_max_s)
        self._max_pending = max_pending
        self._slots = asyncio.Semaphore(concurrency)
        self._tenant_max = tenant_max_pending
        self._tenant_concurrency = tenant_concurrency
        self._tenants: dict[str, _Tenant] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._room = asyncio.Event()
        self._room.set()
        self.deferred = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def room(self) -> int:
        return max(0, self._max_pending - len(self._tasks))

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def offer(self, entry: OutboxEntry) -> bool:
        """Start delivering `entry` unless it is running here already or a bound is reached."""
        if entry.id in self._tasks:
            return True
        tenant = self._tenants.get(entry.tenant)
        if len(self._tasks) >= self._max_pending or (tenant and tenant.pending >= self._tenant_max):
            self.deferred += 1
            log.warning("webhook of tenant %s deferred (%d pending here): job %s entry %d stays in the outbox",
                        entry.tenant, tenant.pending if tenant else len(self._tasks), entry.job_id, entry.entry)
            return False
        if tenant is None:
            tenant = self._tenants[entry.tenant] = _Tenant(0, asyncio.Semaphore(self._tenant_concurrency))
        tenant.pending += 1
        task = asyncio.create_task(self._run(entry, tenant))
        self._tasks[entry.id] = task
        if len(self._tasks) >= self._max_pending:
            self._room.clear()
        return True

    async def _run(self, entry: OutboxEntry, tenant: _Tenant) -> None:
        try:
            await self.deliver(entry, tenant.slots)
        except Exception:
            log.exception("webhook delivery of job %s entry %d crashed", entry.job_id, entry.entry)
        finally:
            self._tasks.pop(entry.id, None)
            self._room.set()
            tenant.pending -= 1
            if tenant.pending == 0:
                self._tenants.pop(entry.tenant, None)

    async def deliver(self, entry: OutboxEntry, tenant_slots: asyncio.Semaphore | None = None) -> bool | None:
        """Claim, POST with retries, settle. True: the receiver answered 2xx; False: given up;
        None: another deliverer holds it (the entry stays pending)."""
        claim = await self._outbox.claim(entry)
        if claim is Claim.SETTLED:
            await self._outbox.ack(entry.id)
            return False
        if claim is Claim.BUSY:
            return None
        # the receiver is the tenant's: it sees the job by the tenant's id, never the internal one
        ident = event_id(entry.shown_job_id, entry.entry)
        body = as_shown_to(entry.body, entry.job_id, entry.shown_job_id)
        key = tenant_secret(self._master, entry.tenant)
        waits = backoff(self._attempts, *self._backoff)
        slots = tenant_slots or asyncio.Semaphore(1)
        for attempt in range(1, self._attempts + 1):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(key, ident, body),
                EVENT_ID_HEADER: ident,
                EVENT_TYPE_HEADER: entry.event_type,
            }
            status = await self._attempt(entry, body, headers, slots)
            if status is not None and 200 <= status < 300:
                await self._outbox.settle(entry, delivered=True)
                return True
            if status == -1 or (status is not None and not should_retry(status)):
                break
            wait = next(waits, None)
            if wait is None:
                break
            await self._outbox.hold(entry, wait)  # the claim outlives the wait
            await asyncio.sleep(wait)
        log.error("webhook %s for job %s entry %d not delivered after %d tries: given up",
                  entry.url, entry.job_id, entry.entry, attempt)
        await self._outbox.settle(entry, delivered=False)
        return False

    async def _attempt(self, entry: OutboxEntry, body: bytes, headers: dict[str, str],
                       tenant_slots: asyncio.Semaphore) -> int | None:
        """The status; None for a failure worth retrying; -1 for a URL that may not be called."""
        async with tenant_slots, self._slots:
            try:
                status = await self._sender.post(entry.url, body, headers)
            except Unresolved as exc:
                log.warning("webhook of job %s: %s", entry.job_id, exc)
                WEBHOOK_DELIVERIES.labels("unresolved").inc()
                return None
            except Refused as exc:
                log.error("webhook of job %s refused: %s", entry.job_id, exc)
                WEBHOOK_DELIVERIES.labels("refused_url").inc()
                return -1
            except TimeoutError:
                log.warning("webhook %s for job %s: no answer within the deadline", entry.url, entry.job_id)
                WEBHOOK_DELIVERIES.labels("timeout").inc()
                return None
            except httpx.HTTPError as exc:
                log.warning("webhook %s for job %s failed: %s", entry.url, entry.job_id, exc)
                WEBHOOK_DELIVERIES.labels("connection_error").inc()
                return None
        if not 200 <= status < 300:
            log.warning("webhook %s answered %d for job %s", entry.url, status, entry.job_id)
        WEBHOOK_DELIVERIES.labels("delivered" if 200 <= status < 300 else f"http_{status // 100}xx").inc()
        return status

    async def close(self, timeout: float = 5.0) -> None:
        """Let running deliveries finish for up to `timeout`, then cancel the rest (they stay in
        the outbox, pending, for the next deliverer)."""
        if self._tasks:
            _, still = await asyncio.wait(set(self._tasks.values()), timeout=timeout)
            for task in still:
                task.cancel()
