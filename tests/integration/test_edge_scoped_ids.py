"""Job ids scoped by tenant, end to end: two tenants may use the same job_id or Idempotency-Key and get
two independent jobs; neither can see, cancel, follow or learn of the other's (404, never 409)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import websockets

from infra.blob import LocalBlobStore, artifact_key
from infra.client import GenloomError
from infra.kafka.signing import signature_headers
from infra.kafka.topics import REQUESTS
from schemas import parse_request
from schemas.events import Artifact, Completed
from schemas.requests import scoped_job_id
from tests.conftest import REQUEST_SIGNING_KEY
from tests.edge_helpers import text_job, wait_for

pytestmark = pytest.mark.integration

A, B = "t-scope-a", "t-scope-b"


def _auth(edge_keys, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {edge_keys[tenant]}"}


async def test_two_tenants_use_the_same_job_id_and_idempotency_key_for_their_own_jobs(
        client_for, worker, gateway_url, edge_keys):
    a, b = client_for(A), client_for(B)
    job_id, key = f"order-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        first_a = await http.post("/v1/jobs", json=text_job("from a", job_id=job_id), headers=_auth(edge_keys, A))
        first_b = await http.post("/v1/jobs", json=text_job("from b", job_id=job_id), headers=_auth(edge_keys, B))
        keyed_a = await http.post("/v1/jobs", json=text_job("a keyed"), headers={**_auth(edge_keys, A),
                                                                                  "Idempotency-Key": key})
        keyed_b = await http.post("/v1/jobs", json=text_job("b keyed"), headers={**_auth(edge_keys, B),
                                                                                  "Idempotency-Key": key})
        # the same tenant again: idempotent (200, the same job); another body with its id: 409, for it only
        repeat_a = await http.post("/v1/jobs", json=text_job("from a", job_id=job_id), headers=_auth(edge_keys, A))
        other_a = await http.post("/v1/jobs", json=text_job("changed", job_id=job_id), headers=_auth(edge_keys, A))
    assert [r.status_code for r in (first_a, first_b, keyed_a, keyed_b)] == [202] * 4
    assert first_a.json()["id"] == first_b.json()["id"] == job_id and keyed_a.json()["id"] == keyed_b.json()["id"] == key
    assert repeat_a.status_code == 200 and repeat_a.json()["id"] == job_id
    assert other_a.status_code == 409 and other_a.json()["error"]["code"] == "idempotency_conflict"
    # each tenant's job runs apart and ends with its own result
    for tenant in (A, B):
        await worker.emit(Completed, scoped_job_id(tenant, job_id), text=f"result of {tenant}")
        await worker.emit(Completed, scoped_job_id(tenant, key), text=f"keyed result of {tenant}")
    for client, tenant in ((a, A), (b, B)):
        events = [e async for e in client.events(job_id)]
        assert [e.type for e in events] == ["accepted", "completed"]
        assert {e.data["job_id"] for e in events} == {job_id}  # never the internal id
        assert events[0].data["tenant"] == tenant and events[-1].data["text"] == f"result of {tenant}"
        assert (await client.get(job_id))["result"]["text"] == f"result of {tenant}"
        keyed = [e async for e in client.events(key)]
        assert keyed[-1].data["text"] == f"keyed result of {tenant}" and keyed[-1].data["job_id"] == key


async def test_every_route_of_another_tenants_job_is_404(client_for, worker, gateway_url, edge_keys, blob_dir):
    a, b = client_for(A), client_for(B)
    job_id = f"only-a-{uuid.uuid4().hex[:6]}"
    internal = scoped_job_id(A, job_id)
    await a.submit({"modality": "video", "params": {"prompt": "a quiet street"}, "job_id": job_id})
    # the video ends with an MP4 that only its tenant may download
    blobs = LocalBlobStore(blob_dir)
    await blobs.put(artifact_key(A, internal, "video.mp4"), b"mp4 of a", "video/mp4")
    await worker.emit(Artifact, internal, index=0, uri=f"file:///blobs/artifacts/{A}/{internal}/video.mp4",
                      mime_type="video/mp4", bytes=8, sha256="0" * 64)
    await worker.emit(Completed, internal)
    events = [e async for e in a.events(job_id)]
    shown = events[1].data["uri"]
    assert shown == f"/v1/artifacts/artifacts/{A}/{job_id}/video.mp4"
    for other_id in (job_id, internal):  # the tenant's id, or the internal one if it leaked
        for call in (b.get(other_id), b.cancel(other_id), _drain(b.events(other_id))):
            with pytest.raises(GenloomError) as info:
                await call
            assert info.value.status == 404 and info.value.code == "not_found"
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        owner = await http.get(shown, headers=_auth(edge_keys, A))
        video = await http.get(f"/v1/videos/{job_id}/content", headers=_auth(edge_keys, A))
        others = [await http.request(method, path, headers=_auth(edge_keys, B)) for method, path in (
            ("GET", shown), ("GET", f"/v1/artifacts/artifacts/{B}/{job_id}/video.mp4"),
            ("GET", f"/v1/artifacts/artifacts/{A}/{internal}/video.mp4"),
            ("GET", f"/v1/videos/{job_id}"), ("GET", f"/v1/videos/{job_id}/content"),
            ("DELETE", f"/v1/videos/{job_id}"))]
    assert owner.status_code == video.status_code == 200 and owner.content == video.content == b"mp4 of a"
    assert [(r.status_code, r.json()["error"]["code"]) for r in others] == [(404, "not_found")] * len(others)
    url = gateway_url.replace("http://", "ws://") + f"/v1/jobs/{job_id}/ws"
    async with websockets.connect(url, additional_headers=_auth(edge_keys, B)) as ws:
        assert json.loads(await ws.recv())["error"]["code"] == "not_found"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4404
    # the other tenant submitting that id gets a job of its own, and learns nothing
    mine = await b.submit({"modality": "video", "params": {"prompt": "a quiet street"}, "job_id": job_id})
    assert mine["id"] == job_id and mine["status"] == "queued"
    assert (await a.get(job_id))["status"] == "completed"
    await worker.emit(Completed, scoped_job_id(B, job_id))


async def test_a_producers_own_request_is_followed_through_the_gateway_by_its_tenant(
        client_for, worker, producer, streams_process):
    a, b = client_for(A), client_for(B)
    job_id = f"raw-{uuid.uuid4().hex[:6]}"
    body = {**text_job("straight onto the request topic"), "job_id": job_id, "tenant": A}
    # named by the producer's id, unqualified: the routing agent qualifies it (and signs it again)
    await producer.send_and_wait(REQUESTS, json.dumps(body).encode(), key=job_id.encode(),
                                 headers=signature_headers(REQUEST_SIGNING_KEY, parse_request(body)))
    seen = await wait_for(lambda: _found(a, job_id), timeout=30)
    assert seen["id"] == job_id and seen["status"] == "queued"
    with pytest.raises(GenloomError) as info:
        await b.get(job_id)
    assert info.value.status == 404
    await worker.emit(Completed, scoped_job_id(A, job_id), text="routed")
    events = [e async for e in a.events(job_id)]
    assert [(e.type, e.data["source"], e.data["job_id"]) for e in events] == [
        ("accepted", "streams", job_id), ("prepared", "streams", job_id), ("completed", "worker", job_id)]
    assert (await a.get(job_id))["result"]["text"] == "routed"


async def _found(client, job_id: str):
    try:
        return await client.get(job_id)
    except GenloomError as exc:
        if exc.status == 404:
            return None
        raise


async def _drain(stream) -> list:
    return [e async for e in stream]
