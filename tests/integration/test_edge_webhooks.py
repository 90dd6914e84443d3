"""Webhooks: end to end from the fan-out to a real local receiver, and the deliverer's parts against
real Redis and real sockets (the outbox taken over after a deliverer died, pinning, the whole-request
deadline, the response cap, per-tenant bounds). The test receivers listen on 127.0.0.1, which the
tests allow-list (GENLOOM_WEBHOOK_ALLOW_NETWORKS in conftest.py); anything else internal is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import time
import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.inprocess import InProcessServer
from infra.client import GenloomError
from infra.net.signing import tenant_secret, verify
from infra.net.ssrf import TargetPolicy, parse_networks
from infra.redis import keys as rkeys
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import JobStore, WebhookOutboxBounds
from infra.redis.outbox import OutboxEntry, WebhookOutbox
from schemas.enums import EventSource, JobStatus, Modality
from schemas.requests import scoped_job_id
from schemas.events import Completed, Failed, Progress, TokenDelta
from streams.fanout.outbox import OutboxDeliverer
from streams.fanout.webhooks import WebhookDispatcher, WebhookSender, new_http_client
from tests.edge_helpers import text_job, wait_for

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = b"edge-test-webhook-secret"  # set for the streams process and the gateway in conftest.py
LOCAL = TargetPolicy(allow=parse_networks("127.0.0.1/32"))


class Receiver:
    """/hook answers 500 to the first POST, 200 afterwards; /ok always 200; /slow waits for `release`."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, str], bytes]] = []
        self.ok_calls: list[tuple[dict[str, str], bytes]] = []
        self.gone_hits = 0
        self.release = asyncio.Event()
        self.slow_now = self.slow_most = 0

    async def gone(self, request: Request) -> Response:
        self.gone_hits += 1
        return Response(status_code=410)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        status = 500 if not self.calls else 200
        self.calls.append((status, dict(request.headers), body))
        return Response(status_code=status)

    async def ok(self, request: Request) -> Response:
        self.ok_calls.append((dict(request.headers), await request.body()))
        return Response(status_code=200)

    async def slow(self, request: Request) -> Response:
        self.slow_now += 1
        self.slow_most = max(self.slow_most, self.slow_now)
        await self.release.wait()
        self.slow_now -= 1
        return Response(status_code=200)

    def delivered(self) -> list[tuple[dict[str, str], dict]]:
        return [(headers, json.loads(body)) for status, headers, body in self.calls if status == 200]


@pytest.fixture
async def receiver():
    rec = Receiver()
    routes = [Route(f"/{name}", getattr(rec, name), methods=["POST"]) for name in ("hook", "gone", "ok", "slow")]
    server = await InProcessServer(Starlette(routes=routes)).start()
    yield rec, f"{server.url}/hook"
    rec.release.set()
    await server.stop()


# -- end to end: gateway, fan-out, outbox, deliverer --

async def test_each_terminal_event_is_delivered_once_signed(client_for, worker, receiver, edge_redis):
    rec, url = receiver
    client = client_for("t-hook")
    spec = {"url": url, "events": ["completed", "failed", "progress"]}
    done = (await client.submit(text_job("hook 1", webhook=spec)))["id"]
    broken = (await client.submit(text_job("hook 2", webhook=spec)))["id"]
    # the workers know the jobs by their internal ids; the receiver sees only the tenant's
    done_internal, broken_internal = scoped_job_id("t-hook", done), scoped_job_id("t-hook", broken)
    for step in range(1, 4):  # three progress events in well under a second: throttled to one
        await worker.emit(Progress, done_internal, step=step, total=3)
    await worker.emit(Completed, done_internal, text="ok")
    await worker.publish(Completed(job_id=done_internal, seq=4, source="worker", text="ok"))  # redelivered
    await worker.emit(Failed, broken_internal, code="generation_error", message=f"boom in {broken_internal}")
    await wait_for(lambda: _count(rec, "completed", "failed"), timeout=20)
    await wait_for(lambda: _settled(edge_redis, rec, done_internal), timeout=20)
    delivered = rec.delivered()
    terminal = sorted((body["job_id"], body["type"]) for _, body in delivered if body["type"] != "progress")
    assert terminal == sorted([(done, "completed"), (broken, "failed")])
    assert [body["message"] for _, body in delivered if body["type"] == "failed"] == [f"boom in {broken}"]
    for _, headers, body in rec.calls:
        assert done_internal.encode() not in body and broken_internal.encode() not in body
        assert headers["x-genloom-event-id"].split(":")[0] in (done, broken)
    assert [body["step"] for _, body in delivered if body["type"] == "progress"] == [1]
    assert rec.calls[0][0] == 500  # the first try failed and was retried
    # the tenant's own key, as the gateway hands it out, verifies; another tenant's key does not
    own = (await client._call("GET", "/v1/webhooks/secret"))["secret"]
    assert own == tenant_secret(WEBHOOK_SECRET, "t-hook")
    other = (await client_for("t-a")._call("GET", "/v1/webhooks/secret"))["secret"]
    assert other != own
    for headers, body in delivered:
        assert headers["x-genloom-event-id"].startswith(body["job_id"] + ":")
        assert headers["x-genloom-event-type"] == body["type"]
    for _, headers, body in rec.calls:
        ident, signature = headers["x-genloom-event-id"], headers["x-genloom-signature"]
        assert signature.startswith("t=") and verify(own, ident, body, signature)
        assert not verify(other, ident, body, signature) and not verify(WEBHOOK_SECRET, ident, body, signature)
    ids = [headers["x-genloom-event-id"] for headers, _ in delivered]
    assert len(ids) == len(set(ids))


async def _count(rec: Receiver, *types: str) -> bool:
    got = {body["type"] for _, body in rec.delivered()}
    return set(types) <= got


async def _settled(redis, rec: Receiver, job_id: str) -> bool:
    """The redelivered `completed` was dropped and every event posted (even one that failed first) is
    marked delivered: no second POST can follow."""
    if await redis.hget(rkeys.dedupe(job_id), "dropped:after_terminal") != b"1":
        return False
    for _, headers, _ in rec.calls:
        job, entry = headers["x-genloom-event-id"].rsplit(":", 1)
        if await redis.get(rkeys.webhook_mark(scoped_job_id("t-hook", job), int(entry))) != b"delivered":
            return False
    return True


#: 127.0.0.1 itself is allow-listed here (the receivers), so loopback is shown as 127.0.0.2 in its encodings
INTERNAL = ["http://127.0.0.2:6379/", "http://[::1]:6379/", "http://0x7f000002:6379/", "http://2130706434/",
            "http://127.2/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:2]/", "http://169.254.169.254/latest/meta-data/",
            "http://metadata.google.internal/computeMetadata/v1/", "http://10.0.0.1/", "http://[fd00:ec2::254]/",
            "http://localhost:6379/"]


@pytest.mark.parametrize("url", INTERNAL)
async def test_submit_refuses_internal_webhook_destinations(client_for, url):
    with pytest.raises(GenloomError) as info:
        await client_for("t-hook").submit(text_job("ssrf", webhook={"url": url}))
    assert (info.value.status, info.value.code, info.value.param) == (400, "invalid_parameter", "webhook.url")


async def test_submit_refuses_token_and_audio_subscriptions(client_for):
    for events in (["token"], ["completed", "audio"]):
        with pytest.raises(GenloomError) as info:
            await client_for("t-hook").submit(text_job("many", webhook={"url": "http://127.0.0.1:9/", "events": events}))
        assert info.value.status == 400 and info.value.code == "invalid_parameter"
        assert info.value.param.startswith("webhook.events")


# -- the outbox: written by the fan-out's script, taken over from a dead deliverer --

def _outbox_key() -> str:
    return f"genloom:test:outbox:{uuid.uuid4().hex[:8]}"


async def _job_with_hook(store: JobStore, tenant: str, url: str, events: list[str]) -> str:
    job = f"hook-{uuid.uuid4().hex[:10]}"
    record = JobRecord(status=JobStatus.QUEUED, tenant=tenant, modality=Modality.TEXT, fingerprint="fp",
                       webhook=json.dumps({"url": url, "events": events}), created_at=time.time())
    await store.admit(job, record, max_inflight=100)
    return job


def _dispatcher(outbox: WebhookOutbox, http: httpx.AsyncClient, *, policy: TargetPolicy = LOCAL, deadline_s=5.0,
                **bounds) -> WebhookDispatcher:
    limits = {"max_pending": 10, "concurrency": 4, "tenant_max_pending": 10, "tenant_concurrency": 4, **bounds}
    return WebhookDispatcher(outbox, WebhookSender(http, policy, deadline_s=deadline_s, max_response_bytes=1024),
                             master=WEBHOOK_SECRET, max_attempts=3, backoff_s=0.05, backoff_max_s=0.1, **limits)


async def test_only_subscribed_events_of_jobs_with_a_webhook_reach_the_outbox(edge_redis):
    key = _outbox_key()
    store = JobStore(edge_redis, webhook_outbox=WebhookOutboxBounds(progress_interval_s=60, key=key))
    # "token" cannot be asked for any more (schemas), but a record written before that may hold it
    hooked = await _job_with_hook(store, "t-hook", "http://127.0.0.1:9/h", ["completed", "progress", "token"])
    plain = f"plain-{uuid.uuid4().hex[:10]}"
    w = EventSource.WORKER
    events = [TokenDelta(job_id=hooked, seq=1, source=w, text="a", tokens=1),
              Progress(job_id=hooked, seq=2, source=w, step=1, total=3),
              Progress(job_id=hooked, seq=3, source=w, step=2, total=3),  # throttled
              Completed(job_id=hooked, seq=4, source=w, text="ok"),
              Completed(job_id=plain, seq=1, source=w, text="ok")]
    for event in events:
        await store.apply(event, event.model_dump_json().encode(), time.time())
    entries = await edge_redis.xrange(key)
    assert [(f[b"job"].decode(), f[b"type"], f[b"tenant"]) for _, f in entries] == [
        (hooked, b"progress", b"t-hook"), (hooked, b"completed", b"t-hook")]
    assert json.loads(entries[1][1][b"data"])["type"] == "completed" and entries[1][1][b"entry"] == b"4"
    # a record without the tenant's id of its job (written before ids were scoped) shows the one it has
    assert {f[b"client"] for _, f in entries} == {hooked.encode()}


async def test_a_delivery_survives_the_deliverer_that_took_it_dying(edge_redis, receiver):
    """At least once, deduplicated: the entry a dead deliverer read is taken over and posted once."""
    rec, url = receiver
    key = _outbox_key()
    store = JobStore(edge_redis, webhook_outbox=WebhookOutboxBounds(key=key))
    job = await _job_with_hook(store, "t-hook", url.replace("/hook", "/ok"), ["completed"])
    event = Completed(job_id=job, seq=1, source=EventSource.WORKER, text="ok")
    await store.apply(event, event.model_dump_json().encode(), time.time())  # recorded, and owed
    outbox = WebhookOutbox(edge_redis, key=key)
    await outbox.ensure_group()
    taken = await outbox.read_new("deliverer-that-dies", count=10, block_ms=100)
    assert [e.job_id for e in taken] == [job] and await outbox.pending() == 1  # ... and it dies here
    async with new_http_client() as http:
        successor = OutboxDeliverer(outbox, _dispatcher(outbox, http), consumer="successor", claim_idle_s=0.3)
        task = asyncio.create_task(successor.run())
        try:
            await wait_for(lambda: _drained(outbox, rec), timeout=20)
            third = OutboxDeliverer(outbox, _dispatcher(outbox, http), consumer="third", claim_idle_s=0.05)
            with contextlib.suppress(TimeoutError):  # nothing is left for anyone: no second POST
                await asyncio.wait_for(third.run(), timeout=1.0)
        finally:
            task.cancel()
    assert [h["x-genloom-event-id"] for h, _ in rec.ok_calls] == [f"{job}:1"]
    assert await edge_redis.get(rkeys.webhook_mark(job, 1)) == b"delivered"


async def _drained(outbox: WebhookOutbox, rec: Receiver) -> bool:
    return bool(rec.ok_calls) and await outbox.pending() == 0


# -- one attempt: pinned, bounded in time and size --

async def test_the_post_goes_to_the_checked_address_with_the_original_host(receiver):
    rec, url = receiver
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    policy = TargetPolicy(allow=parse_networks("127.0.0.1/32"), resolver=resolve)
    async with new_http_client() as http:  # hooks.invalid resolves nowhere: only the pinned IP can work
        sender = WebhookSender(http, policy, deadline_s=5, max_response_bytes=1024)
        assert await sender.post(f"http://hooks.invalid:{port}/ok", b"{}", {}) == 200
    assert lookups == ["hooks.invalid"]
    assert rec.ok_calls[0][0]["host"] == f"hooks.invalid:{port}"


async def test_https_is_pinned_with_the_original_name_for_sni_and_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=hooks.invalid", "-addext", "subjectAltName=DNS:hooks.invalid"],
                   check=True, capture_output=True)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    hosts: list[bytes] = []

    async def answer(reader, writer):
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            hosts.extend(line[5:].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"host:"))
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    policy = TargetPolicy(allow=parse_networks("127.0.0.1/32"), resolver=resolve)
    async with server, new_http_client(ssl.create_default_context(cafile=str(cert))) as http:
        sender = WebhookSender(http, policy, deadline_s=10, max_response_bytes=1024)
        assert await sender.post(f"https://hooks.invalid:{port}/h", b"{}", {}) == 204
    assert names == ["hooks.invalid"] and hosts == [f"hooks.invalid:{port}".encode()]


async def _serve(handler) -> tuple[asyncio.base_events.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    await reader.readexactly(length)


async def test_a_trickling_receiver_is_cut_at_the_whole_request_deadline():
    async def trickle(reader, writer):  # one byte every 0.3 s, forever: no single read ever times out
        with contextlib.suppress(ConnectionError, OSError):
            await _read_request(reader)
            for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.3)

    server, port = await _serve(trickle)
    async with server, new_http_client() as http:
        sender = WebhookSender(http, LOCAL, deadline_s=1.0, max_response_bytes=1024)
        attempt = asyncio.create_task(sender.post(f"http://127.0.0.1:{port}/", b"{}", {}))
        done, _ = await asyncio.wait({attempt}, timeout=30)
        attempt.cancel()
        assert done, "the attempt was not cut at its deadline"
        with pytest.raises(TimeoutError):
            attempt.result()


async def test_only_the_first_bytes_of_an_endless_answer_are_read():
    sent = 0

    async def endless(reader, writer):
        nonlocal sent
        with contextlib.suppress(ConnectionError, OSError):
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
            while sent < 1 << 30:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)

    server, port = await _serve(endless)
    async with server, new_http_client() as http:
        sender = WebhookSender(http, LOCAL, deadline_s=60, max_response_bytes=4096)
        assert await asyncio.wait_for(sender.post(f"http://127.0.0.1:{port}/", b"{}", {}), timeout=30) == 200
    assert sent < 64 << 20


# -- the dispatcher: re-checks the URL, bounds per tenant --

def _entry(job: str, tenant: str, url: str) -> OutboxEntry:
    return OutboxEntry(id=f"{int(time.time() * 1000)}-{uuid.uuid4().int % 10**6}", job_id=job, entry=1,
                       event_type="completed", tenant=tenant, url=url, body=b'{"type":"completed"}')


async def test_two_deliverers_of_one_entry_post_it_once(edge_redis, receiver):
    rec, url = receiver
    outbox = WebhookOutbox(edge_redis, key=_outbox_key())
    entry = _entry(f"twice-{uuid.uuid4().hex[:8]}", "t-hook", url.replace("/hook", "/ok"))
    async with new_http_client() as http:
        first, second = await asyncio.gather(_dispatcher(outbox, http).deliver(entry),
                                             _dispatcher(outbox, http).deliver(entry))
        # one posts; the other found it claimed (None, left pending) or, if it came after, settled (False)
        assert sorted([first, second], key=repr) in ([None, True], [False, True])
        assert await _dispatcher(outbox, http).deliver(entry) is False  # settled: only acknowledged
    assert len(rec.ok_calls) == 1
    assert await edge_redis.get(rkeys.webhook_mark(entry.job_id, 1)) == b"delivered"
    # a receiver that says 4xx is not retried
    gone = _entry(f"gone-{uuid.uuid4().hex[:8]}", "t-hook", url.replace("/hook", "/gone"))
    async with new_http_client() as http:
        assert await _dispatcher(outbox, http).deliver(gone) is False
    assert rec.gone_hits == 1


async def test_a_refused_destination_is_given_up_without_a_post(edge_redis):
    outbox = WebhookOutbox(edge_redis, key=_outbox_key())
    async with new_http_client() as http:
        dispatcher = _dispatcher(outbox, http)
        job = f"hook-{uuid.uuid4().hex[:8]}"
        assert await dispatcher.deliver(_entry(job, "t-hook", "http://[::1]:6379/")) is False
    assert await edge_redis.get(rkeys.webhook_mark(job, 1)) == b"given_up"


async def test_one_tenants_slow_receiver_does_not_hold_up_another(edge_redis, receiver):
    rec, url = receiver
    base = url.rsplit("/", 1)[0]
    outbox = WebhookOutbox(edge_redis, key=_outbox_key())
    async with new_http_client() as http:
        dispatcher = _dispatcher(outbox, http, tenant_max_pending=2, tenant_concurrency=1)
        slow = [_entry(f"slow-{uuid.uuid4().hex[:8]}", "t-slow", f"{base}/slow") for _ in range(3)]
        assert [dispatcher.offer(e) for e in slow] == [True, True, False]  # the third waits in the outbox
        await wait_for(lambda: _true(rec.slow_now == 1), timeout=20)
        fast = _entry(f"fast-{uuid.uuid4().hex[:8]}", "t-fast", f"{base}/ok")
        assert dispatcher.offer(fast)
        await wait_for(lambda: _true(len(rec.ok_calls) == 1), timeout=20)  # while t-slow's still hang
        assert rec.slow_now == 1 and rec.slow_most == 1  # t-slow gets one connection at a time
        rec.release.set()
        await wait_for(lambda: _true(dispatcher.pending == 0), timeout=20)
        await dispatcher.close()


async def _true(value: bool) -> bool:
    return value
