"""The job API: idempotency, admission (429), tenant isolation, cancel, artifacts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import ApiKeys
from infra.blob import LocalBlobStore, artifact_key
from infra.client import GenloomError
from infra.kafka.broker import LocalBroker
from infra.kafka.clients import ensure_topics
from infra.kafka.codec import decode_request
from infra.kafka.signing import refusal
from infra.kafka.topics import CONTROL, EVENTS, REQUESTS, catalogue, jobs_topic
from infra.redis import keys as rkeys
from infra.redis.jobstore import JobStore
from infra.settings.gateway import GatewaySettings
from schemas.events import Artifact, Cancelled, Completed
from schemas.requests import scoped_job_id
from tests.conftest import REQUEST_SIGNING_KEY
from tests.edge_helpers import read_until_idle, text_job, values, wait_for
from tests.kafka_helpers import read_topic, started_producer

pytestmark = pytest.mark.integration


async def test_idempotent_submit_publishes_once(client_for, kafka_bootstrap):
    client = client_for("t-idem")
    body = text_job("same", job_id="idem-1")
    first = await client.submit(body)
    again = await client.submit(body)
    by_header = await client.submit(text_job("same"), idempotency_key="idem-1")
    assert first["id"] == again["id"] == by_header["id"] == "idem-1"
    with pytest.raises(GenloomError) as conflict:
        await client.submit(text_job("different", job_id="idem-1"))
    assert conflict.value.status == 409 and conflict.value.code == "idempotency_conflict"
    # the gateway routes it straight to the text workers' topic, once, by its internal id
    internal = scoped_job_id("t-idem", "idem-1")
    jobs = [v for v in values(await read_until_idle(kafka_bootstrap, jobs_topic("text"))) if v.get("job_id") == internal]
    assert len(jobs) == 1 and jobs[0]["tenant"] == "t-idem" and jobs[0]["client_job_id"] == "idem-1"
    assert not [v for v in values(await read_until_idle(kafka_bootstrap, REQUESTS)) if v.get("job_id") == internal]
    accepted = [v for v in values(await read_until_idle(kafka_bootstrap, EVENTS)) if v.get("job_id") == internal]
    assert [(a["type"], a["client_job_id"]) for a in accepted] == [("accepted", "idem-1")]


async def test_streams_route_goes_through_routing_with_one_accepted(client_for, gateway_url_b, kafka_bootstrap):
    # the second test gateway publishes to genloom.requests; the preparation processor forwards the job
    client = client_for("t-idem", url=gateway_url_b)
    await client.submit(text_job("via the stream processors", job_id="idem-streams"))
    internal = scoped_job_id("t-idem", "idem-streams")
    requests = [v for v in values(await read_until_idle(kafka_bootstrap, REQUESTS)) if v.get("job_id") == internal]
    assert len(requests) == 1
    routed = await read_topic(kafka_bootstrap, jobs_topic("text"),
                              until=lambda msgs: any(v.get("job_id") == internal for v in values(msgs)))
    job = next(m for m in routed if json.loads(m.value).get("job_id") == internal)
    # the gateway's signature went on with the job: a worker with the key runs it
    assert refusal(REQUEST_SIGNING_KEY, decode_request(job.value), job.headers) is None
    messages = await read_topic(kafka_bootstrap, EVENTS, until=lambda msgs: any(
        v.get("job_id") == internal and v.get("type") == "prepared" for v in values(msgs)))
    events = [v for v in values(messages) if v.get("job_id") == internal]
    assert [(e["type"], e["source"]) for e in events] == [("accepted", "gateway"), ("prepared", "streams")]


async def test_in_flight_bound_answers_429_until_a_job_ends(client_for, worker, edge_store):
    client = client_for("t-load")
    results = await asyncio.gather(
        *(client.submit(text_job(f"load {i}")) for i in range(6)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, GenloomError)]
    assert len(admitted) == 3 and len(refused) == 3
    assert all(r.status == 429 and r.code == "rate_limited" for r in refused)
    assert await edge_store.inflight("t-load", "text") == 3
    # the bound is per modality
    image = await client.submit({"modality": "image", "params": {"prompt": "a cat"}})
    assert image["status"] == "queued"
    # Retry-After is on the raw answer
    raw = await client._http.post("/v1/jobs", json=text_job("one more"))
    assert raw.status_code == 429 and int(raw.headers["Retry-After"]) >= 1
    # a terminal event releases exactly one slot (once, even if repeated)
    first = scoped_job_id("t-load", admitted[0]["id"])
    await worker.emit(Completed, first)
    await worker.publish(Completed(job_id=first, seq=0, source="worker"))
    await wait_for(lambda: _inflight_is(edge_store, "t-load", 2))
    assert (await client.submit(text_job("after")))["status"] == "queued"
    with pytest.raises(GenloomError):
        await client.submit(text_job("over again"))
    for job in admitted[1:]:
        await worker.emit(Completed, scoped_job_id("t-load", job["id"]))


async def _inflight_is(store, tenant: str, count: int) -> bool:
    return await store.inflight(tenant, "text") == count


async def test_other_tenants_get_404_everywhere(client_for, gateway_url, edge_keys, blob_dir, worker):
    owner, other = client_for("t-a"), client_for("t-b")
    jid = (await owner.submit(text_job("mine")))["id"]
    for call in (other.get(jid), other.cancel(jid), _drain(other.events(jid))):
        with pytest.raises(GenloomError) as info:
            await call
        assert info.value.status == 404 and info.value.code == "not_found"
    store = LocalBlobStore(blob_dir)
    internal = scoped_job_id("t-a", jid)
    ref = await store.put(artifact_key("t-a", internal, "out.png"), b"\x89PNG fake", "image/png")
    await store.put(artifact_key("t-a", internal, "held.png"), b"\x89PNG held", "image/png")
    # the worker (played here) releases out.png; held.png is never released (the gate still checks it, or blocked it)
    await worker.emit(Artifact, internal, uri=ref.uri, mime_type="image/png", bytes=ref.bytes, sha256=ref.sha256)
    key = artifact_key("t-a", jid, "out.png")  # what the owner is shown
    await wait_for(lambda: _listed(owner, jid))
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        held = await http.get(f"/v1/artifacts/{artifact_key('t-a', jid, 'held.png')}", headers=_auth(edge_keys, "t-a"))
        mine = await http.get(f"/v1/artifacts/{key}", headers=_auth(edge_keys, "t-a"))
        theirs = await http.get(f"/v1/artifacts/{key}", headers=_auth(edge_keys, "t-b"))
        missing = await http.get(f"/v1/artifacts/{artifact_key('t-a', jid, 'nope.png')}", headers=_auth(edge_keys, "t-a"))
        climbing = await http.get("/v1/artifacts/artifacts/t-a/../t-b/x/y", headers=_auth(edge_keys, "t-a"))
    assert mine.status_code == 200 and mine.content == b"\x89PNG fake" and mine.headers["content-type"] == "image/png"
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    assert missing.status_code == 404 and climbing.status_code == 404
    assert held.status_code == 404  # stored, but no artifact event released it: never served
    assert (await owner.cancel(jid))["id"] == jid  # the owner can


async def _listed(client, job_id: str) -> bool:
    view = await client.get(job_id)
    return bool((view.get("result") or {}).get("artifacts"))


async def _drain(stream) -> list:
    return [e async for e in stream]


def _auth(edge_keys, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {edge_keys[tenant]}"}


async def test_cancel_while_queued_ends_the_job_once(client_for, worker, kafka_bootstrap, edge_redis, edge_store):
    client = client_for("t-cancel")
    jid = (await client.submit(text_job("stop me")))["id"]
    raw = await client._http.post(f"/v1/jobs/{jid}/cancel")
    assert raw.status_code == 202
    second = await client._http.post(f"/v1/jobs/{jid}/cancel")
    assert second.status_code == 200 and second.json()["id"] == jid
    events = [e async for e in client.events(jid)]
    assert [(e.type, e.data["source"]) for e in events] == [("accepted", "gateway"), ("cancelled", "gateway")]
    # a worker that saw the cancel late says so too: the fan-out keeps only the first terminal
    internal = scoped_job_id("t-cancel", jid)
    await worker.emit(Cancelled, internal, reason="stopped between steps")
    await wait_for(lambda: _hget(edge_redis, rkeys.dedupe(internal), "dropped:after_terminal"))
    assert [e.type for e in await edge_store.entries(internal)].count("cancelled") == 1
    done = await client._http.post(f"/v1/jobs/{jid}/cancel")
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    controls = [v for v in values(await read_until_idle(kafka_bootstrap, CONTROL)) if v.get("job_id") == internal]
    assert len(controls) == 1 and controls[0]["tenant"] == "t-cancel" and controls[0]["type"] == "cancel"
    assert await edge_store.inflight("t-cancel", "text") == 0


async def test_a_chat_whose_job_is_cancelled_answers_409_cancelled(gateway_url, edge_keys):
    auth = _auth(edge_keys, "t-cancel")
    async with httpx.AsyncClient(base_url=gateway_url, headers=auth, timeout=30) as http:
        model = (await http.get("/v1/models")).json()["data"][0]["id"]
        chat = asyncio.create_task(http.post(
            "/v1/chat/completions", headers={"Idempotency-Key": "chat-cancelled-1"},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
        await wait_for(lambda: _found(http, "/v1/jobs/chat-cancelled-1"))
        cancel = await http.post("/v1/jobs/chat-cancelled-1/cancel")
        response = await chat
    assert cancel.status_code == 202
    assert response.status_code == 409 and response.json()["error"]["code"] == "cancelled"
    assert "cancelled before it finished" in response.json()["error"]["message"]


async def _found(http: httpx.AsyncClient, path: str) -> bool:
    return (await http.get(path)).status_code == 200


async def _hget(redis, key, field):
    return await redis.hget(key, field)


async def test_publish_failure_keeps_the_job_for_an_identical_retry_and_answers_503(edge_redis, edge_keys, blob_dir,
                                                                                   kafka_bootstrap, edge_producer):
    broker = LocalBroker().start()
    producer = await started_producer(broker.bootstrap)
    broker.stop()  # the event log goes away after the gateway connected
    job_id = f"unacked-{uuid.uuid4().hex[:6]}"
    try:
        app = create_app(GatewaySettings(publish_timeout_s=1.5, route="direct"), redis=edge_redis,
                         producer=producer, api_keys=ApiKeys([("k", "t-rollback")]),
                         blobs=LocalBlobStore(blob_dir))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                     headers={"Authorization": "Bearer k"}) as http:
            response = await http.post("/v1/jobs", json=text_job("x", job_id=job_id))
            seen = await http.get(f"/v1/jobs/{job_id}")
            again = await http.post("/v1/jobs", json=text_job("x", job_id=job_id))
            ready = await http.get("/readyz")
        assert response.status_code == 503 and response.json()["error"]["code"] == "backend_unavailable"
        assert "same job_id" in response.json()["error"]["message"]
        # the message may still land: the owner sees the job, and the advised retry is no conflict
        assert seen.status_code == 200 and seen.json()["status"] == "queued"
        assert again.status_code == 503 and again.json()["error"]["code"] == "backend_unavailable"
        record = await JobStore(edge_redis).load(scoped_job_id("t-rollback", job_id))
        assert record.tenant == "t-rollback" and record.client_id == job_id and record.unacked and record.slot_held
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "backend_unavailable"
    finally:
        await producer.stop()
    # the same retry through a gateway whose broker is up publishes the job
    app = create_app(GatewaySettings(publish_timeout_s=5, route="direct"), redis=edge_redis, producer=edge_producer,
                     api_keys=ApiKeys([("k", "t-rollback")]), blobs=LocalBlobStore(blob_dir))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"Authorization": "Bearer k"}) as http:
        retry = await http.post("/v1/jobs", json=text_job("x", job_id=job_id))
    assert retry.status_code == 200 and retry.json()["status"] == "queued"
    assert not (await JobStore(edge_redis).load(scoped_job_id("t-rollback", job_id))).unacked
    await read_topic(kafka_bootstrap, jobs_topic("text"), timeout=60,
                     until=lambda ms: any(json.loads(m.value)["client_job_id"] == job_id for m in ms))


async def test_a_submit_that_timed_out_on_a_paused_broker_lands_later_and_its_retry_succeeds(
        edge_redis, edge_keys, blob_dir):
    job_id = f"paused-{uuid.uuid4().hex[:6]}"
    with LocalBroker() as broker:
        await ensure_topics(broker.bootstrap, catalogue())
        producer = await started_producer(broker.bootstrap)
        try:
            app = create_app(GatewaySettings(publish_timeout_s=1.0, route="direct"), redis=edge_redis, producer=producer,
                             api_keys=ApiKeys([("k", "t-rollback")]), blobs=LocalBlobStore(blob_dir))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                         headers={"Authorization": "Bearer k"}) as http:
                os.kill(broker.pid, signal.SIGSTOP)
                try:
                    response = await http.post("/v1/jobs", json=text_job("x", job_id=job_id))
                finally:
                    os.kill(broker.pid, signal.SIGCONT)
                assert response.status_code == 503 and "same job_id" in response.json()["error"]["message"]
                # the producer still delivers the message it had queued: the job will run
                landed = await read_topic(broker.bootstrap, jobs_topic("text"), timeout=60,
                                          until=lambda ms: any(json.loads(m.value)["client_job_id"] == job_id for m in ms))
                assert landed

                async def acknowledged():
                    return not (await JobStore(edge_redis).load(scoped_job_id("t-rollback", job_id))).unacked

                await wait_for(acknowledged, timeout=60)  # the late acknowledgement is recorded too
                seen = await http.get(f"/v1/jobs/{job_id}")
                assert seen.status_code == 200  # its owner never gets 404 for a job that runs
                retry = await http.post("/v1/jobs", json=text_job("x", job_id=job_id))
                assert retry.status_code == 200 and retry.json()["id"] == job_id
                other = await http.post("/v1/jobs", json=text_job("y", job_id=job_id))
                assert other.status_code == 409  # a different body is still a conflict
        finally:
            await producer.stop()
