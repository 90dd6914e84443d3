"""The job lifecycle over SSE: streaming, status, and resume after a forced disconnect."""

from __future__ import annotations


import httpx
import pytest

from infra.client import SseParser
from infra.redis import keys
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from schemas.requests import scoped_job_id
from tests.edge_helpers import CuttableProxy, text_job, wait_for

pytestmark = pytest.mark.integration

MODEL = {"id": "tiny", "device": "cpu", "dtype": "float32", "random_weights": True}


async def test_submit_stream_and_status(client_for, worker):
    client = client_for("t-flow")
    job = await client.submit(text_job("hi", model="tiny-chat"))
    assert job["status"] == "queued" and job["modality"] == "text" and job["model"] == "tiny-chat"
    jid = job["id"]
    wid = scoped_job_id("t-flow", jid)
    await worker.emit(Started, wid, worker="w1", model=ModelInfo(**MODEL))
    await worker.emit(TokenDelta, wid, text="Hel", tokens=1)
    await worker.emit(TokenDelta, wid, text="lo", tokens=1)
    await worker.emit(Completed, wid, text="Hello", usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5))
    events = [e async for e in client.events(jid)]
    assert [(e.id, e.type) for e in events] == [
        (1, "accepted"), (2, "started"), (3, "token"), (4, "token"), (5, "completed")
    ]
    assert events[0].data["source"] == "gateway" and events[0].data["tenant"] == "t-flow"
    status = await client.get(jid)
    assert status["status"] == "completed" and status["last_event_id"] == 5
    assert status["result"]["text"] == "Hello" and status["result"]["finish_reason"] == "stop"
    assert status["usage"]["total_tokens"] == 5 and status["model_info"]["id"] == "tiny"


async def test_sse_resume_after_forced_disconnect_loses_and_repeats_nothing(
    client_for, worker, gateway_url, gateway_url_b, edge_keys
):
    proxy = await CuttableProxy(int(gateway_url.rsplit(":", 1)[1])).start()
    try:
        client = client_for("t-resume", url=proxy.url, backoff_s=0.05)
        jid = (await client.submit(text_job("resume")))["id"]
        wid = scoped_job_id("t-resume", jid)
        await worker.emit(Started, wid, worker="w1", model=ModelInfo(**MODEL))
        await worker.emit(TokenDelta, wid, text="a", tokens=1)
        received = []
        stream = client.events(jid)
        async for event in stream:
            received.append(event)
            if len(received) == 3:
                break
        await stream.aclose()
        # the second half starts on a live connection that is then cut mid-stream
        resumed = client.events(jid, last_event_id=received[-1].id)
        await worker.emit(TokenDelta, wid, text="b", tokens=1)
        first = await resumed.__anext__()
        received.append(first)
        proxy.cut()
        for text in "cde":
            await worker.emit(TokenDelta, wid, text=text, tokens=1)
        await worker.emit(Completed, wid, text="abcde")
        received += [e async for e in resumed]
        assert proxy.connections >= 3  # first stream, resumed stream, reconnect after the cut
        assert [e.id for e in received] == list(range(1, 9))
        assert "".join(e.data["text"] for e in received if e.type == "token") == "abcde"
        assert received[-1].type == "completed"

        # any instance resumes from the same cursor: ask the second gateway from id 4
        headers = {"Authorization": f"Bearer {edge_keys['t-resume']}", "Last-Event-ID": "4"}
        async with httpx.AsyncClient(base_url=gateway_url_b, timeout=10) as http:
            async with http.stream("GET", f"/v1/jobs/{jid}/events", headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                parser, ids = SseParser(), []
                async for line in response.aiter_lines():
                    if (item := parser.feed(line)) is not None:
                        ids.append(int(item[0]))
        assert ids == list(range(5, 9))
    finally:
        await proxy.stop()


async def test_disconnect_stops_reading_but_does_not_cancel(client_for, edge_redis, worker, gateway_url, edge_keys):
    client = client_for("t-flow")
    jid = (await client.submit(text_job("leave")))["id"]
    wid = scoped_job_id("t-flow", jid)

    async def subscribers() -> int:
        """Connections subscribed to the job's log channel (the gateway's one replay reader, while anyone follows)."""
        [(_, count)] = await edge_redis.pubsub_numsub(keys.replay_log(wid))
        return count

    before = 0
    await wait_for(lambda: _le(subscribers, before), timeout=10)
    headers = {"Authorization": f"Bearer {edge_keys['t-flow']}"}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        async with http.stream("GET", f"/v1/jobs/{jid}/events", headers=headers) as response:
            lines = response.aiter_lines()
            while "accepted" not in await lines.__anext__():
                pass
            while await lines.__anext__() != ": keep-alive":  # idle streams get comments (0.5 s here)
                pass
            await wait_for(lambda: _gt(subscribers, before), timeout=5)
    await wait_for(lambda: _le(subscribers, before), timeout=5)  # the reader left the job's channel
    assert (await client.get(jid))["status"] == "queued"
    await worker.emit(Completed, wid)  # free the tenant's slot


async def _gt(probe, value) -> bool:
    return await probe() > value


async def _le(probe, value) -> bool:
    return await probe() <= value
