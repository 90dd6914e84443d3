"""The fan-out agent (in the real streams process): dedupe, attempts, first terminal, DLQ, replay window."""

from __future__ import annotations

import json

import httpx
import pytest

from infra.client import GenloomError, SseParser
from infra.kafka.topics import DLQ, EVENTS
from infra.redis import keys as rkeys
from schemas.enums import EventSource
from schemas.events import Completed, Failed, ModelInfo, Started, TokenDelta
from schemas.requests import scoped_job_id
from tests.edge_helpers import text_job, wait_for
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

MODEL = ModelInfo(id="tiny", device="cpu", dtype="float32")


def _ev(cls, jid, seq, attempt=0, **fields):
    return cls(job_id=jid, seq=seq, attempt=attempt, source=EventSource.WORKER, **fields)


async def test_duplicates_stale_attempts_and_late_terminals_are_dropped(client_for, worker, edge_redis):
    client = client_for("t-dedupe")
    jid = (await client.submit(text_job("dedupe")))["id"]
    wid = scoped_job_id("t-dedupe", jid)  # what the workers and Redis know it by
    sent = [
        _ev(Started, wid, 0, worker="w1", model=MODEL),
        _ev(TokenDelta, wid, 1, text="a", tokens=1),
        _ev(TokenDelta, wid, 1, text="a", tokens=1),                 # redelivered: duplicate
        _ev(Started, wid, 0, attempt=1, worker="w2", model=MODEL),   # takeover after a crash
        _ev(TokenDelta, wid, 1, attempt=1, text="A", tokens=1),
        _ev(TokenDelta, wid, 2, text="b", tokens=1),                 # the old attempt: stale
        _ev(Completed, wid, 2, attempt=1, text="A"),
        _ev(Failed, wid, 3, attempt=1, code="generation_error", message="late"),  # after terminal
        _ev(Completed, wid, 2, attempt=1, text="A"),                 # after terminal (and a duplicate)
    ]
    for event in sent:
        await worker.publish(event)
    events = [e async for e in client.events(jid)]
    assert [(e.type, e.data["source"], e.data["attempt"], e.data["seq"]) for e in events] == [
        ("accepted", "gateway", 0, 0), ("started", "worker", 0, 0), ("token", "worker", 0, 1),
        ("started", "worker", 1, 0), ("token", "worker", 1, 1), ("completed", "worker", 1, 2),
    ]
    await wait_for(lambda: _field(edge_redis, rkeys.dedupe(wid), "dropped", b"5"))
    counts = await edge_redis.hgetall(rkeys.dedupe(wid))
    # duplicates: the redelivered token, and the gateway's `accepted` from genloom.events (the gateway put it
    # in the replay log itself before it published the request)
    assert counts[b"dropped:duplicate"] == b"2" and counts[b"dropped:stale_attempt"] == b"1"
    assert counts[b"dropped:after_terminal"] == b"2"
    status = await client.get(jid)
    assert status["status"] == "completed" and status["result"]["text"] == "A" and status["error"] is None
    assert status["model_info"]["id"] == "tiny" and status["last_event_id"] == 6


async def _field(redis, key, field, value) -> bool:
    return await redis.hget(key, field) == value


async def test_malformed_event_goes_to_dlq_and_the_agent_goes_on(client_for, worker, edge_producer, kafka_bootstrap):
    client = client_for("t-dedupe")
    jid = (await client.submit(text_job("poison")))["id"]
    wid = scoped_job_id("t-dedupe", jid)
    await edge_producer.send_and_wait(EVENTS, b'{"type": "token", "job_id": "' + wid.encode() + b'"}',
                                      key=wid.encode())
    await edge_producer.send_and_wait(EVENTS, b"\xff\x00 not json", key=b"garbage-key")
    letters = await read_topic(kafka_bootstrap, DLQ, until=lambda ms: {b"garbage-key", wid.encode()} <= {
        m.key for m in ms if json.loads(m.value)["topic"] == EVENTS})
    mine = {m.key: json.loads(m.value) for m in letters if json.loads(m.value)["topic"] == EVENTS}
    assert mine[wid.encode()]["code"] == "malformed_message" and mine[wid.encode()]["job_id"] == wid
    assert mine[b"garbage-key"]["code"] == "invalid_json"
    await worker.emit(Completed, wid)
    assert [e.type async for e in client.events(jid)] == ["accepted", "completed"]


async def test_cursor_older_than_the_window_is_replay_expired(client_for, worker, edge_redis, gateway_url, edge_keys):
    client = client_for("t-expire")
    jid = (await client.submit(text_job("long")))["id"]
    wid = scoped_job_id("t-expire", jid)
    for i in range(6):
        await worker.emit(TokenDelta, wid, text=str(i), tokens=1)
    await worker.emit(Completed, wid)
    assert len([e async for e in client.events(jid)]) == 8
    await edge_redis.xtrim(rkeys.replay_log(wid), maxlen=3, approximate=False)  # the retention window moves on
    with pytest.raises(GenloomError) as info:
        [e async for e in client.events(jid, last_event_id=2)]
    assert info.value.code == "replay_expired" and "starts at 6" in info.value.message
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        headers = {"Authorization": f"Bearer {edge_keys['t-expire']}", "Last-Event-ID": "2"}
        response = await http.get(f"/v1/jobs/{jid}/events", headers=headers)
    frames = [item for line in response.text.split("\n") if (item := _parser.feed(line))]
    assert frames == [(None, "error", frames[0][2])] and json.loads(frames[0][2])["error"]["code"] == "replay_expired"
    # the cursor right before the window, and no cursor at all, still work
    assert [e.id async for e in client.events(jid, last_event_id=5)] == [6, 7, 8]
    assert [e.id async for e in client.events(jid)] == [6, 7, 8]


_parser = SseParser()
