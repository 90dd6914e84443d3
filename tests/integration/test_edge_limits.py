"""Edge limits against a redis-server of this module's own (stopped and paused here, never the
shared one): validation off the event loop, one Redis reader for many streams, per-tenant stream
caps, stream lifetime, WebSocket frame and rate limits, Redis faults as 503, and what answers and
logs must not show."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import uuid

import httpx
import pytest
import websockets


from gateway.app import create_app
from gateway.auth import ApiKeys
from gateway.inprocess import InProcessServer
from infra.blob import LocalBlobStore
from infra.models.catalog import TextModelCatalog, TextModelEntry
from infra.procs import free_port
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis import keys as rkeys
from infra.redis.jobstore import JobStore
from infra.redis.outbox import WebhookOutbox
from infra.redis.server import LocalRedis
from infra.settings.gateway import GatewaySettings
from schemas.enums import EventSource, JobStatus, Modality
from schemas.events import Accepted, Artifact, Completed
from schemas.requests import scoped_job_id
from tests.edge_helpers import text_job

pytestmark = pytest.mark.integration

TENANT, KEY = "t-edge", "glk_edge-limits-key"
OTHER, OTHER_KEY = "t-edge-b", "glk_edge-limits-other"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def own_redis():
    with LocalRedis() as server:
        yield server


@pytest.fixture
def fault_redis():
    """A redis-server for one test that stops or pauses it (resumed before it is stopped)."""
    server = LocalRedis().start()
    yield server
    with contextlib.suppress(ProcessLookupError, TypeError):
        os.kill(server.pid, signal.SIGCONT)
    server.stop()


class _Producer:
    """What /readyz asks of the producer (a connected client) and a publish that lands nowhere."""

    class client:  # noqa: N801 - the attribute aiokafka's producer has
        @staticmethod
        async def force_metadata_update() -> bool:
            return True

    @staticmethod
    async def send(topic, value, key=None, headers=None) -> asyncio.Future:
        landed = asyncio.get_running_loop().create_future()
        landed.set_result(None)
        return landed


def _app(url: str | None, tmp_path, *, text_models: TextModelCatalog | None = None, **settings):
    settings.setdefault("sse_keepalive_s", 0.2)
    settings.setdefault("redis_socket_timeout_s", 1.0)
    settings.setdefault("redis_connect_timeout_s", 1.0)
    gateway = GatewaySettings(**settings)
    redis = connect(url, max_connections=gateway.redis_max_connections, socket_timeout_s=gateway.redis_socket_timeout_s,
                    connect_timeout_s=gateway.redis_connect_timeout_s) if url else None
    app = create_app(gateway, redis=redis, producer=_Producer(),
                     api_keys=ApiKeys([(KEY, TENANT), (OTHER_KEY, OTHER)]), blobs=LocalBlobStore(tmp_path),
                     text_models=text_models or TextModelCatalog([]))
    return app


async def _shut(app) -> None:
    await app.state.replay.aclose()
    await app.state.redis.aclose()


async def _job(url: str, tenant: str = TENANT, *events) -> str:
    """A job of `tenant` with its `accepted` event (and `events`) in the replay log: the tenant's id of it."""
    job_id = f"edge-{uuid.uuid4().hex[:10]}"
    internal = scoped_job_id(tenant, job_id)
    client = connect(url)
    try:
        store = JobStore(client)
        await store.admit(internal, JobRecord(status=JobStatus.QUEUED, tenant=tenant, client_id=job_id,
                                              modality=Modality.TEXT, fingerprint="f"), max_inflight=1000)
        await _emit(store, Accepted(job_id=internal, seq=0, source=EventSource.GATEWAY, tenant=tenant,
                                    client_job_id=job_id, modality=Modality.TEXT))
        for event in events:
            await _emit(store, event.model_copy(update={"job_id": internal}))
    finally:
        await client.aclose()
    return job_id


async def _emit(store: JobStore, event) -> None:
    await store.apply(event, event.model_dump_json().encode(), time.time())


async def _finish(url: str, job_id: str, tenant: str = TENANT) -> None:
    client = connect(url)
    try:
        await _emit(JobStore(client), Completed(job_id=scoped_job_id(tenant, job_id), seq=1, source=EventSource.WORKER))
    finally:
        await client.aclose()


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


# -- 1. validation off the event loop ----------------------------------------------------------------


class _BlockingTokenizer:
    """Tokenises nothing until the test releases it; every prompt is one token too long."""

    all_special_tokens: list[str] = []
    added_tokens_decoder: dict = {}

    def __init__(self, context: int) -> None:
        self.context = context
        self.calls = 0
        self.entered, self.release, self.finished = threading.Event(), threading.Event(), threading.Event()

    def apply_chat_template(self, messages, **_) -> list[int]:
        self.calls += 1
        self.entered.set()
        self.release.wait(10)
        self.finished.set()
        return list(range(self.context + 1))


def _chat(content: str) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4}


async def test_healthz_answers_while_a_chat_body_is_tokenised(tmp_path):
    tokenizer = _BlockingTokenizer(context=1024)
    catalog = TextModelCatalog([TextModelEntry("tiny", "unused", tokenizer=tokenizer, context_length=1024)])
    app = _app(None, tmp_path, text_models=catalog)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as http:
        chat = asyncio.create_task(http.post("/v1/chat/completions", json=_chat("x" * 20_000), headers=AUTH))
        await _until(tokenizer.entered.is_set)
        health = await asyncio.wait_for(http.get("/healthz"), 20)
        assert health.status_code == 200
        assert not tokenizer.finished.is_set()  # /healthz answered while the prompt was still being tokenised
        tokenizer.release.set()
        response = await chat
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


async def test_a_chat_longer_than_the_context_can_hold_is_refused_before_tokenising(tmp_path):
    tokenizer = _BlockingTokenizer(context=8192)
    tokenizer.release.set()
    catalog = TextModelCatalog([TextModelEntry("tiny", "unused", tokenizer=tokenizer, context_length=8192)])
    app = _app(None, tmp_path, text_models=catalog)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as http:
        body = {**_chat(""), "messages": [{"role": "user", "content": "word " * 22_500}] * 8}  # 900 KB
        response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "context_length_exceeded"
    assert error["param"] == "messages" and "characters" in error["message"]
    assert tokenizer.calls == 0


# -- 2. one Redis reader for every stream -------------------------------------------------------------


async def _connections(url: str) -> int:
    client = connect(url)
    try:
        return len((await client.execute_command("CLIENT", "LIST")).splitlines()) - 1  # not this one
    finally:
        await client.aclose()


async def _first_frames(frames: list[asyncio.Event], readers: list[asyncio.Task], timeout: float = 30) -> None:
    """Until every stream has its first frame; a stream that ended before (an error status, a closed
    body) fails the test with its own error at once rather than as a wait that runs out."""
    framed = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in frames)))
    done, _ = await asyncio.wait([framed, *readers], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if framed not in done:
        framed.cancel()
        ended = [(i, r) for i, r in enumerate(readers) if r.done()]
        for i, reader in ended:
            if reader.exception() is not None:
                raise AssertionError(f"stream {i} failed before its first frame: {reader.exception()!r}") \
                    from reader.exception()
        missing = [i for i, e in enumerate(frames) if not e.is_set()]
        raise AssertionError(f"streams {missing} had no first frame within {timeout}s; ended early: "
                             f"{[i for i, _ in ended]}")


async def test_many_sse_streams_share_one_redis_reader(own_redis, tmp_path):
    streams, pool = 60, 8
    # 60 streams opening at once share 8 connections for their first reads (the job's record, its log's
    # head, the backlog), all on this one event loop with the client: on a slow host a caller can queue
    # for a connection past the module's 1 s socket timeout, which bounds that wait too (a 503 then, as
    # the CI run of 3602691 saw). The field's default (not whatever the environment sets) keeps the
    # queue's bound without racing the host.
    app = _app(own_redis.url, tmp_path, max_sse_per_tenant=streams, redis_max_connections=pool,
               redis_socket_timeout_s=GatewaySettings.model_fields["redis_socket_timeout_s"].default)
    server = await InProcessServer(app).start()
    job_id = await _job(own_redis.url)
    before = await _connections(own_redis.url)
    bodies: list[bytes] = [b""] * streams
    first_frame = [asyncio.Event() for _ in range(streams)]

    async def read(i: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH) as response:
            assert response.status_code == 200, (response.status_code, await response.aread())
            async for chunk in response.aiter_bytes():
                bodies[i] += chunk
                if b"id: 1\n" in bodies[i]:
                    first_frame[i].set()

    limits = httpx.Limits(max_connections=streams + 5)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            readers = [asyncio.create_task(read(i, http)) for i in range(streams)]
            await _first_frames(first_frame, readers)
            # every stream is idle now, each waiting for its next entry: count while each sends two keep-alives
            await _until(lambda: all(b.count(b": keep-alive") >= 1 for b in bodies))
            opened = 0
            while not all(b.count(b": keep-alive") >= 3 for b in bodies):
                opened = max(opened, await _connections(own_redis.url) - before)
                await asyncio.sleep(0.02)
            await _finish(own_redis.url, job_id)
            await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        await server.stop()
        await _shut(app)
    assert opened <= pool, f"{streams} streams opened {opened} Redis connections"
    one = [frame for frame in bodies[0].split(b"\n\n") if frame and not frame.startswith(b":")]
    assert one[0] == b"retry: 1000" and one[1].startswith(b"id: 1\nevent: accepted\n")
    assert one[-1].startswith(b"id: 2\nevent: completed\n")
    assert all(body.replace(b": keep-alive\n\n", b"") == bodies[0].replace(b": keep-alive\n\n", b"")
               for body in bodies)


# -- 3. per-tenant caps, lifetime, WebSocket limits ---------------------------------------------------


async def test_sse_streams_per_tenant_are_capped(own_redis, tmp_path):
    app = _app(own_redis.url, tmp_path, max_sse_per_tenant=2)
    server = await InProcessServer(app).start()
    job_id = await _job(own_redis.url)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH) as one, \
                       http.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH) as two:
                assert one.status_code == two.status_code == 200
                third = await http.get(f"/v1/jobs/{job_id}/events", headers=AUTH)
                other_job = await _job(own_redis.url, OTHER)
                async with http.stream("GET", f"/v1/jobs/{other_job}/events",
                                       headers={"Authorization": f"Bearer {OTHER_KEY}"}) as other:
                    other_status = other.status_code  # another tenant is not held back
            assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limited"
            assert third.headers["Retry-After"] == str(app.state.settings.retry_after_s)
            assert other_status == 200

            async def reopened() -> int:
                async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH) as again:
                    return again.status_code

            deadline = time.monotonic() + 20
            while (status := await reopened()) != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the closed streams give their slots back
            assert status == 200
    finally:
        await server.stop()
        await _shut(app)


async def test_a_stream_past_its_lifetime_ends_with_a_reconnect_frame(own_redis, tmp_path):
    app = _app(own_redis.url, tmp_path, stream_max_lifetime_s=0.5)
    server = await InProcessServer(app).start()
    job_id = await _job(own_redis.url)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = (await asyncio.wait_for(http.get(f"/v1/jobs/{job_id}/events", headers=AUTH), 20)).content
            url = server.url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
            async with websockets.connect(url, additional_headers=AUTH) as ws:
                frames = []
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        frames.append(await asyncio.wait_for(ws.recv(), 20))
    finally:
        await server.stop()
        await _shut(app)
    # keep-alive comments may come anywhere (one may precede the first entry on a loaded machine)
    assert body.replace(b": keep-alive\n\n", b"").startswith(b"retry: 1000\n\nid: 1\nevent: accepted\n")
    assert body.endswith(b"\n\n") and b"event: error\n" in body and b"Last-Event-ID: 1" in body
    assert closed.value.rcvd.code == 4408 and "Last-Event-ID: 1" in frames[-1]


async def _ws_closed(url: str, send) -> websockets.frames.Close:
    async with websockets.connect(url, additional_headers=AUTH, max_size=None) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await send(ws)
            while True:
                await asyncio.wait_for(ws.recv(), 20)
    return closed.value.rcvd


async def test_websocket_caps_frame_size_and_rate(own_redis, tmp_path):
    app = _app(own_redis.url, tmp_path, ws_max_frame_bytes=1024, ws_messages_per_s=1, ws_message_burst=3)
    capped = _app(own_redis.url, tmp_path, max_ws_per_tenant=1)
    server, capped_server = await InProcessServer(app).start(), await InProcessServer(capped).start()
    job_id = await _job(own_redis.url)
    url = server.url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
    capped_url = capped_server.url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"

    async def flood(ws) -> None:
        for _ in range(30):
            await ws.send('{"type": "ping"}')

    try:
        too_big = await _ws_closed(url, lambda ws: ws.send("x" * 4096))
        flooded = await _ws_closed(url, flood)
        async with websockets.connect(capped_url, additional_headers=AUTH) as first:
            assert '"accepted"' in await asyncio.wait_for(first.recv(), 20)
            second = await _ws_closed(capped_url, lambda ws: asyncio.sleep(0))
    finally:
        for each in (server, capped_server):
            await each.stop()
        for each in (app, capped):
            await _shut(each)
    assert too_big.code == 1009
    assert flooded.code == 1008
    assert second.code == 4429 and "Retry-After" in second.reason


# -- 4. Redis faults ----------------------------------------------------------------------------------


async def test_stopped_redis_is_503_with_retry_after(fault_redis, tmp_path):
    app = _app(fault_redis.url, tmp_path)
    job_id = await _job(fault_redis.url)
    fault_redis.stop()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                     timeout=30) as http:
            got = await http.get(f"/v1/jobs/{job_id}", headers=AUTH)
            posted = await http.post("/v1/jobs", headers=AUTH, json={
                "modality": "text", "params": {"messages": [{"role": "user", "content": "hi"}]}})
    finally:
        await _shut(app)
    for response in (got, posted):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "backend_unavailable"
        assert int(response.headers["Retry-After"]) >= 1


async def test_paused_redis_is_503_within_the_socket_timeout(fault_redis, tmp_path):
    app = _app(fault_redis.url, tmp_path)
    job_id = await _job(fault_redis.url)
    os.kill(fault_redis.pid, signal.SIGSTOP)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                     timeout=30) as http:
            got = await asyncio.wait_for(http.get(f"/v1/jobs/{job_id}", headers=AUTH), 20)  # a deadline, not a hang
    finally:
        os.kill(fault_redis.pid, signal.SIGCONT)
        await _shut(app)
    assert got.status_code == 503 and got.json()["error"]["code"] == "backend_unavailable"
    assert "Retry-After" in got.headers


# -- 5. what answers and logs must not show -----------------------------------------------------------


async def test_browser_tokens_follow_only_their_job_and_are_never_logged(own_redis, tmp_path):
    app = _app(own_redis.url, tmp_path)
    server = await InProcessServer(app).start()
    job_id, sibling = await _job(own_redis.url), await _job(own_redis.url)
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    capture = Capture()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.INFO)
    ws_base = server.url.replace("http", "ws")
    tokens = app.state.browser_tokens
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {KEY}"}
            issued = await http.post(f"/v1/jobs/{job_id}/token", headers=auth)
            assert issued.status_code == 200 and issued.json()["expires_at"] > time.time()
            token = issued.json()["token"]
            assert KEY not in token and token.startswith("glt_")
            refused = [await http.post(f"/v1/jobs/{job_id}/token"),  # no key
                       await http.post(f"/v1/jobs/{job_id}/token", headers={"Authorization": f"Bearer {OTHER_KEY}"}),
                       await http.post("/v1/jobs/no-such-job/token", headers=auth)]
            assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [
                (401, "unauthorized"), (404, "not_found"), (404, "not_found")]
            async with http.stream("GET", f"/v1/jobs/{job_id}/events?token={token}") as stream:
                assert stream.status_code == 200
                async for chunk in stream.aiter_text():
                    if "event: accepted" in chunk:
                        break
            expired = tokens.issue(TENANT, job_id, now=time.time() - 3600).token
            foreign = tokens.issue(OTHER, job_id).token  # the other tenant has no job of that id
            cases = [(f"/v1/jobs/{sibling}/events?token={token}", 403, "forbidden"),
                     (f"/v1/jobs/{job_id}/events?token={token[:-3]}xyz", 401, "unauthorized"),
                     (f"/v1/jobs/{job_id}/events?token={expired}", 401, "unauthorized"),
                     (f"/v1/jobs/{job_id}/events?token={foreign}", 404, "not_found"),
                     (f"/v1/jobs/{job_id}/events?api_key={KEY}", 401, "unauthorized")]
            for path, status, code in cases:
                answer = await http.get(path)
                assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), path
        async with websockets.connect(f"{ws_base}/v1/jobs/{job_id}/ws?token={token}&last_event_id=0") as ws:
            assert '"accepted"' in await asyncio.wait_for(ws.recv(), 20)
        for query, code in ((f"api_key={KEY}", 4401), (f"token={tokens.issue(TENANT, sibling).token}", 4403)):
            async with websockets.connect(f"{ws_base}/v1/jobs/{job_id}/ws?{query}") as ws:
                await asyncio.wait_for(ws.recv(), 20)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == code
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(capture)
            lg.setLevel(level)
        await server.stop()
        await _shut(app)
    logged = "\n".join(lines)
    assert "WebSocket" in logged and f"/v1/jobs/{job_id}/ws" in logged and f"/v1/jobs/{job_id}/events" in logged
    assert KEY not in logged and "api_key" not in logged and "token=" not in logged and "glt_" not in logged


async def test_job_list_shows_the_tenants_newest_jobs_only(own_redis, tmp_path):
    app = _app(own_redis.url, tmp_path)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as http:
            mine = []
            for n in range(3):
                answer = await http.post("/v1/jobs", json=text_job(f"prompt {n}"), headers=AUTH)
                assert answer.status_code == 202, answer.text
                mine.append(answer.json()["id"])
            other = {"Authorization": f"Bearer {OTHER_KEY}"}
            theirs = (await http.post("/v1/jobs", json=text_job("not yours"), headers=other)).json()["id"]
            listed = (await http.get("/v1/jobs?limit=2", headers=AUTH)).json()
            assert listed["object"] == "list" and [job["id"] for job in listed["data"]] == mine[:0:-1]
            assert listed["data"][0]["status"] == "queued" and listed["data"][0]["modality"] == "text"
            # the other tenant's newest is its own (jobs other tests admitted for it are listed after it), none of mine
            others = [j["id"] for j in (await http.get("/v1/jobs", headers=other)).json()["data"]]
            assert others[0] == theirs and not set(mine) & set(others)
            assert (await http.get("/v1/jobs")).status_code == 401
            assert (await http.get("/v1/jobs?limit=1000", headers=AUTH)).status_code in (400, 422)
    finally:
        await _shut(app)


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000,
                                  b'{"modality": "text", "params": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001],
                         ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_400(body, tmp_path):
    app = _app(None, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as http:
        for path in ("/v1/jobs", "/v1/chat/completions"):
            response = await http.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "invalid_json" and "nested" in response.json()["error"]["message"]


async def test_unauthenticated_readyz_shows_no_addresses(tmp_path):
    port = free_port()  # nothing listens there
    app = _app(f"redis://127.0.0.1:{port}/0", tmp_path)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                     timeout=30) as http:
            anonymous = await http.get("/readyz")
            operator = await http.get("/readyz", headers=AUTH)
    finally:
        await _shut(app)
    assert anonymous.status_code == operator.status_code == 503
    assert "redis" in anonymous.json()["error"]["message"]
    assert "127.0.0.1" not in anonymous.text and str(port) not in anonymous.text
    assert str(port) in operator.text


async def test_artifact_uris_show_no_server_paths(own_redis, tmp_path):
    secret = "/srv/secret-blob-root"
    job_id = await _job(own_redis.url)
    internal = scoped_job_id(TENANT, job_id)
    artifact = Artifact(job_id=internal, seq=1, source=EventSource.WORKER, uri=f"file://{secret}/artifacts/x/y/out.png",
                        mime_type="image/png", bytes=3, sha256="0" * 64)
    client = connect(own_redis.url)
    try:
        artifact = artifact.model_copy(update={"uri": f"file://{secret}/artifacts/{TENANT}/{internal}/out.png"})
        await _emit(JobStore(client), artifact)
        await _emit(JobStore(client), Completed(job_id=internal, seq=2, source=EventSource.WORKER))
    finally:
        await client.aclose()
    app = _app(own_redis.url, tmp_path)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                     timeout=30) as http:
            view = (await http.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
            events = (await http.get(f"/v1/jobs/{job_id}/events", headers=AUTH)).text
    finally:
        await _shut(app)
    expected = f"/v1/artifacts/artifacts/{TENANT}/{job_id}/out.png"
    assert view["result"]["artifacts"][0]["uri"] == expected
    assert "event: artifact" in events and expected in events
    assert secret not in str(view) and secret not in events and "file://" not in events
    assert internal not in str(view) and internal not in events  # the tenant sees its own id only


async def test_readyz_reports_webhooks_degraded_while_no_deliverer_reports_in(tmp_path):
    with LocalRedis() as server:  # a Redis no streams process reports to
        app = _app(server.url, tmp_path)
        assert app.state.webhooks.enabled  # GENLOOM_WEBHOOK_SECRET is set for the edge tests
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                         timeout=30) as http:
                alone = await http.get("/readyz")
                await WebhookOutbox(app.state.redis).beat("streams-1", time.time())
                served = await http.get("/readyz")
                await app.state.redis.zadd(rkeys.webhook_deliverers(), {"streams-1": time.time() - 3600})
                gone = await http.get("/readyz")
        finally:
            await _shut(app)
    assert alone.status_code == 200 and alone.json()["status"] == "ready"  # jobs are still served
    assert "no webhook deliverer" in alone.json()["degraded"]["webhooks"]
    assert served.json() == {"status": "ready"}
    assert "webhooks" in gone.json()["degraded"]
