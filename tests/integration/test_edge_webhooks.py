"""Webhooks from the fan-out to a real local HTTP receiver that fails once, then succeeds."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.inprocess import InProcessServer
from infra.redis import keys as rkeys
from schemas.events import Completed, Failed, Progress
from streams.fanout.webhooks import Delivery, WebhookDispatcher, verify
from tests.edge_helpers import text_job, wait_for

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = b"edge-test-webhook-secret"  # set for the streams process in conftest.py


class Receiver:
    """Answers 500 to the first POST, 200 afterwards; keeps every delivery."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, str], bytes]] = []
        self.gone_hits = 0

    async def gone(self, request: Request) -> Response:
        self.gone_hits += 1
        return Response(status_code=410)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        status = 500 if not self.calls else 200
        self.calls.append((status, dict(request.headers), body))
        return Response(status_code=status)

    def delivered(self) -> list[tuple[dict[str, str], dict]]:
        return [(headers, json.loads(body)) for status, headers, body in self.calls if status == 200]


@pytest.fixture
async def receiver():
    rec = Receiver()
    server = await InProcessServer(Starlette(routes=[Route("/hook", rec.hook, methods=["POST"]),
                                                      Route("/gone", rec.gone, methods=["POST"])])).start()
    yield rec, f"{server.url}/hook"
    await server.stop()


async def test_each_terminal_event_is_delivered_once_signed(client_for, worker, receiver, edge_redis):
    rec, url = receiver
    client = client_for("t-hook")
    spec = {"url": url, "events": ["completed", "failed", "progress"]}
    done = (await client.submit(text_job("hook 1", webhook=spec)))["id"]
    broken = (await client.submit(text_job("hook 2", webhook=spec)))["id"]
    for step in range(1, 4):  # three progress events in well under a second: throttled to one
        await worker.emit(Progress, done, step=step, total=3)
    await worker.emit(Completed, done, text="ok")
    await worker.publish(Completed(job_id=done, seq=4, source="worker", text="ok"))  # redelivered
    await worker.emit(Failed, broken, code="generation_error", message="boom")
    await wait_for(lambda: _count(rec, "completed", "failed"), timeout=20)
    await wait_for(lambda: _settled(edge_redis, rec, done), timeout=20)
    delivered = rec.delivered()
    terminal = sorted((body["job_id"], body["type"]) for _, body in delivered if body["type"] != "progress")
    assert terminal == sorted([(done, "completed"), (broken, "failed")])
    assert [body["step"] for _, body in delivered if body["type"] == "progress"] == [1]
    assert rec.calls[0][0] == 500  # the first try failed and was retried
    for headers, body in delivered:
        assert headers["x-genloom-event-id"].startswith(body["job_id"] + ":")
        assert headers["x-genloom-event-type"] == body["type"]
    for status, headers, body in rec.calls:
        assert verify(WEBHOOK_SECRET, body, headers["x-genloom-signature"])
        assert not verify(b"another secret", body, headers["x-genloom-signature"])
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
        if await redis.get(rkeys.webhook_mark(job, int(entry))) != b"delivered":
            return False
    return True


async def test_two_deliverers_of_one_event_post_it_once(edge_redis, receiver):
    rec, url = receiver
    rec.calls.append((200, {}, b"{}"))  # use up the receiver's one failure
    async with httpx.AsyncClient() as http:
        def dispatcher() -> WebhookDispatcher:
            return WebhookDispatcher(edge_redis, http, secret=WEBHOOK_SECRET, max_attempts=3, backoff_s=0.05,
                                     backoff_max_s=0.1, progress_interval_s=0, max_pending=10, concurrency=2,
                                     mark_ttl_s=60)

        delivery = Delivery("hook-direct-1", 5, "completed", url, b'{"type":"completed"}')
        first, second = await asyncio.gather(dispatcher().deliver(delivery), dispatcher().deliver(delivery))
        assert sorted([first, second]) == [False, True]
        assert await edge_redis.get(rkeys.webhook_mark("hook-direct-1", 5)) == b"delivered"
        assert not await dispatcher().deliver(delivery)  # and never again
        # a receiver that says 4xx is not retried, and the claim is released for a later try
        gone = Delivery("hook-direct-2", 1, "completed", url.replace("/hook", "/gone"), b"{}")
        assert not await dispatcher().deliver(gone)
        assert rec.gone_hits == 1 and not await edge_redis.exists(rkeys.webhook_mark("hook-direct-2", 1))
