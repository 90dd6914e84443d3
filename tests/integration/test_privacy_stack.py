"""Personal data planted in chat, image and speech jobs never gets past `genloom.requests`.

The whole local stack runs as `genloom up` runs it (infra/stack.py): the bundled broker, a
redis-server, `python -m streams` (the preparation chain with the privacy stage, and the fan-out),
real text (SmolLM2), speech (piper) and image (tiny random pipeline) workers, and the gateway. After
the jobs ended, every topic after `genloom.requests`, every Redis key and value, every blob and
every log file the stack wrote is searched for the planted values: none may be there. Then the
requester's own stream is checked for its values restored (and not, for a tenant that turned
restoration off), with the test playing the text worker so that the output surely echoes the
placeholders, split across token deltas.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import httpx
import pytest

from infra.kafka import clients
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import EVENTS, REQUESTS, catalogue, jobs_topic
from infra.procs import free_port, stop_process
from infra.redis.client import connect
from infra.stack import Stack
from schemas import parse_request
from schemas.enums import EventSource
from schemas.events import Completed, ModelInfo, Started, TokenDelta
from tests.conftest import FAST_STREAMS_ENV, REQUEST_SIGNING_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME, EMAIL, PHONE = "Margaret Thornbury", "margaret.thornbury@example.org", "+44 20 7946 0958"
CARD, IBAN, ADDRESS = "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "221B Baker Street"
SECRET = "sk-live9Fq2XbT7LmN4PzR8WcV3"
PLANTED = f"My name is {NAME}, e-mail {EMAIL}, phone {PHONE}, card {CARD}, IBAN {IBAN}, I live at {ADDRESS}," \
          f" and my API key is {SECRET}."
#: what must not appear anywhere, in every spelling a component might have written
NEEDLES = [NAME, "Thornbury", EMAIL, PHONE, "2079460958", CARD, CARD.replace(" ", ""), IBAN,
           IBAN.replace(" ", ""), ADDRESS, "Baker Street", SECRET]
KEYS = {"t-priv": "gl-priv-key-0001", "t-plain": "gl-plain-key-0002"}
MODEL = ModelInfo(id="echo", device="cpu", dtype="float32")


def hits(blob: bytes | str, where: str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [f"{where}: {n!r}" for n in NEEDLES if n.encode() in data or json.dumps(n)[1:-1].encode() in data]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("privacy-stack")
    port = free_port()
    env = {
        **FAST_STREAMS_ENV,
        "GENLOOM_HOME": str(home), "GENLOOM_BLOB_DIR": str(home / "blobs"),
        "GENLOOM_API_KEYS": ",".join(f"{k}:{t}" for t, k in KEYS.items()),
        "GENLOOM_REQUEST_SIGNING_KEY": REQUEST_SIGNING_KEY.decode(),
        "GENLOOM_PRIVACY_KEY": "stack-privacy-key",
        "GENLOOM_PRIVACY_RESTORE_OFF_TENANTS": "t-plain",
        "GENLOOM_GATEWAY_ROUTE": "streams",
    }
    for name in ("GENLOOM_KAFKA_BOOTSTRAP", "GENLOOM_REDIS_URL"):
        os.environ.pop(name, None)
    s = Stack(log_dir=home / "logs", env=env)
    s.start_backends()
    s.add_core()
    for modality in ("text", "speech", "image"):
        s.add(f"worker-{modality}", ["workers", modality])
    s.add("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(port)], port=port)
    try:
        s.start()
        yield s, f"http://127.0.0.1:{port}", home
    finally:
        s.stop()


async def submit(url: str, tenant: str, body: dict) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await http.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {KEYS[tenant]}"})
        assert r.status_code in (200, 202), r.text
        return r.json()["id"]


async def events_of(url: str, tenant: str, job_id: str, timeout: float = 300) -> list[dict]:
    """The job's SSE events as the requester sees them, until the terminal one."""
    out: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        async with http.stream("GET", f"/v1/jobs/{job_id}/events",
                               headers={"Authorization": f"Bearer {KEYS[tenant]}"}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    out.append(json.loads(line[6:]))
                    if out[-1].get("type") in ("completed", "failed", "cancelled"):
                        return out
    return out


async def read_all(bootstrap: str, topic: str, idle_s: float = 2.0) -> list:
    """Every message of `topic` (read until nothing new arrives for `idle_s`)."""
    consumer = clients.consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    seen: list = []
    try:
        quiet = 0.0
        while quiet < idle_s:
            batches = await consumer.getmany(timeout_ms=200)
            got = [m for ms in batches.values() for m in ms]
            seen += got
            quiet = 0.0 if got else quiet + 0.2
    finally:
        await consumer.stop()
    return seen


async def redis_dump(url: str) -> list[tuple[bytes, bytes]]:
    redis = connect(url)
    out = []
    try:
        async for key in redis.scan_iter(count=500):
            kind = (await redis.type(key)).decode()
            if kind == "string":
                value = await redis.get(key)
            elif kind == "hash":
                value = repr(await redis.hgetall(key)).encode()
            elif kind == "stream":
                value = repr(await redis.xrange(key)).encode()
            elif kind == "list":
                value = repr(await redis.lrange(key, 0, -1)).encode()
            elif kind == "set":
                value = repr(await redis.smembers(key)).encode()
            elif kind == "zset":
                value = repr(await redis.zrange(key, 0, -1)).encode()
            else:
                value = b""
            out.append((key, value or b""))
    finally:
        await redis.aclose()
    return out


async def test_no_planted_value_gets_past_the_request_topic(stack):
    s, url, home = stack
    chat = await submit(url, "t-priv", {"modality": "text", "params": {
        "messages": [{"role": "system", "content": f"The user is {NAME} ({EMAIL})."},
                     {"role": "user", "content": PLANTED}], "max_tokens": 8, "temperature": 0}})
    image = await submit(url, "t-priv", {"modality": "image", "params": {
        "prompt": f"a portrait of {NAME} holding a card {CARD}", "negative_prompt": f"no {EMAIL}",
        "width": 64, "height": 64, "steps": 2}})
    speech = await submit(url, "t-priv", {"modality": "speech", "params": {"input": PLANTED}})
    ended = await asyncio.gather(*(events_of(url, "t-priv", j) for j in (chat, image, speech)))
    for job_events in ended:
        types = [e["type"] for e in job_events]
        assert "prepared" in types and types[-1] == "completed", job_events[-1]
    prepared = next(e for e in ended[0] if e["type"] == "prepared")
    assert prepared["redactions"]["PERSON"] >= 2 and prepared["redactions"]["CARD"] == 1
    assert prepared["stages"] == ["privacy", "moderation", "embedding", "enrichment", "cache"]
    assert "privacy" in prepared["stage_ms"]

    found: list[str] = []
    for spec in catalogue():
        if spec.name != REQUESTS:
            for m in await read_all(s.bootstrap, spec.name):
                found += hits(m.value or b"", spec.name) + hits(repr(m.headers).encode(), spec.name)
    assert any(parse_request(m.value).client_job_id == chat for m in await read_all(s.bootstrap, jobs_topic("text")))
    for key, value in await redis_dump(s.redis_url):
        found += hits(key + b" " + value, f"redis {key!r}")
    for path in Path(home).rglob("*"):
        if path.is_file():
            found += hits(path.read_bytes(), str(path.relative_to(home)))
    assert found == []


async def test_the_requester_sees_values_restored_unless_the_tenant_turned_it_off(stack):
    s, url, home = stack
    text_worker = next(c for c in s.components if c.name == "worker-text")
    stop_process(text_worker.proc, timeout=10)  # from here the test plays the text worker
    producer = clients.producer(s.bootstrap)
    await clients.start_client(producer, s.bootstrap)
    emitter = EventEmitter(producer, EVENTS, EventSource.WORKER)
    try:
        shown = {}
        for tenant in ("t-priv", "t-plain"):
            job = await submit(url, tenant, {"modality": "text", "params": {
                "messages": [{"role": "user", "content": f"Write to {NAME} at {EMAIL}"}], "max_tokens": 8}})
            sent = await read_job(s.bootstrap, job)
            prompt = sent.params.messages[0].content
            assert NAME not in prompt and EMAIL not in prompt and "<PERSON_1>" in prompt and "<EMAIL_1>" in prompt
            reply = f"Dear {prompt[len('Write to '):]}!"  # "Dear <PERSON_1> at <EMAIL_1>!"
            cuts = [0, 7, 10, 16, 22, len(reply)]  # "<PERSON_1>" and "<EMAIL_1>" both split across deltas
            await emitter.emit(Started, sent.job_id, worker="test", model=MODEL)
            for a, b in zip(cuts, cuts[1:]):
                await emitter.emit(TokenDelta, sent.job_id, text=reply[a:b], tokens=1)
            await emitter.emit(Completed, sent.job_id, text=reply)
            seen = await events_of(url, tenant, job, timeout=60)
            tokens = "".join(e["text"] for e in seen if e["type"] == "token")
            completed = next(e for e in seen if e["type"] == "completed")
            async with httpx.AsyncClient(base_url=url) as http:
                view = (await http.get(f"/v1/jobs/{job}", headers={"Authorization": f"Bearer {KEYS[tenant]}"})).json()
            shown[tenant] = (tokens, completed["text"], view["result"]["text"])
        assert shown["t-priv"] == (f"Dear {NAME} at {EMAIL}!",) * 3
        assert shown["t-plain"] == ("Dear <PERSON_1> at <EMAIL_1>!",) * 3
    finally:
        await producer.stop()


async def read_job(bootstrap: str, job_id: str):
    for _ in range(60):
        for m in await read_all(bootstrap, jobs_topic("text"), idle_s=0.5):
            request = parse_request(m.value)
            if request.client_job_id == job_id:  # workers know it by the internal id; the tenant by its own
                return request
        await asyncio.sleep(0.5)
    raise AssertionError(f"{job_id} never reached {jobs_topic('text')}")


def test_needles_match_what_they_should():
    assert hits(f"x {CARD} y", "t") and not hits("<CARD_1> <PERSON_1>", "t")
    assert re.search(re.escape(IBAN), PLANTED)
