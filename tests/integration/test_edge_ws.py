"""The event stream over WebSocket, and cancel from the socket."""

from __future__ import annotations

import json

import pytest
import websockets

from infra.kafka.topics import CONTROL
from schemas.events import Cancelled, ModelInfo, Started, TokenDelta
from schemas.requests import scoped_job_id
from tests.edge_helpers import read_until_idle, text_job, values

pytestmark = pytest.mark.integration


def _ws_url(http_url: str, jid: str, query: str) -> str:
    return http_url.replace("http://", "ws://") + f"/v1/jobs/{jid}/ws?{query}"


async def test_websocket_streams_events_and_cancels(client_for, worker, gateway_url, edge_keys, kafka_bootstrap):
    client = client_for("t-ws")
    jid = (await client.submit(text_job("ws")))["id"]
    wid = scoped_job_id("t-ws", jid)
    await worker.emit(Started, wid, worker="w1", model=ModelInfo(id="tiny", device="cpu", dtype="float32"))
    await worker.emit(TokenDelta, wid, text="x", tokens=1)
    token = (await client.browser_token(jid))["token"]  # what a browser uses: no header on its WebSocket
    async with websockets.connect(_ws_url(gateway_url, jid, f"token={token}")) as ws:
        frames = [json.loads(await ws.recv()) for _ in range(3)]
        assert [(f["id"], f["type"]) for f in frames] == [(1, "accepted"), (2, "started"), (3, "token")]
        assert frames[2]["event"]["text"] == "x" and frames[2]["event"]["job_id"] == jid
        await ws.send(json.dumps({"type": "cancel"}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "cancel_ack" and ack["published"] is True and ack["job"]["status"] == "running"
        controls = [v for v in values(await read_until_idle(kafka_bootstrap, CONTROL, idle_s=0.5))
                    if v.get("job_id") == wid]
        assert len(controls) == 1
        await worker.emit(Cancelled, wid, reason="cancel requested")  # the worker obeys
        last = json.loads(await ws.recv())
        assert last["id"] == 4 and last["type"] == "cancelled" and last["event"]["source"] == "worker"
        with pytest.raises(websockets.ConnectionClosedOK):
            await ws.recv()
    # resume over the socket, authenticated by header this time
    headers = {"Authorization": f"Bearer {edge_keys['t-ws']}"}
    async with websockets.connect(_ws_url(gateway_url, jid, "last_event_id=2"), additional_headers=headers) as ws:
        assert [json.loads(await ws.recv())["id"] for _ in range(2)] == [3, 4]


async def test_websocket_refuses_bad_key_and_other_tenants(client_for, gateway_url, edge_keys):
    jid = (await client_for("t-ws").submit(text_job("private")))["id"]
    other = (await client_for("t-ws").submit(text_job("another")))["id"]
    other_token = (await client_for("t-ws").browser_token(other))["token"]
    for query, key, code, error in (("", "nope", 4401, "unauthorized"),
                                    (f"api_key={edge_keys['t-ws']}", None, 4401, "unauthorized"),  # never in a URL
                                    ("token=glt_forged.mac", None, 4401, "unauthorized"),
                                    (f"token={other_token}", None, 4403, "forbidden"),
                                    ("", edge_keys["t-b"], 4404, "not_found"),
                                    ("last_event_id=x", edge_keys["t-ws"], 4400, "invalid_parameter")):
        headers = {"Authorization": f"Bearer {key}"} if key else None
        async with websockets.connect(_ws_url(gateway_url, jid, query), additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["error"]["code"] == error
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == code
