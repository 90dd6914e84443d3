"""The moderation gate killed (SIGKILL) with tokens held in its windows: a new gate process
releases them, nothing is lost, and whatever is published twice is the same event (same source,
attempt and seq), which the fan-out records once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from aiokafka import TopicPartition

from infra.kafka import clients
from infra.kafka.codec import encode
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import EVENTS, EVENTS_RAW
from infra.procs import stop_process
from schemas import EventSource
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from tests.conftest import FAST_STREAMS_ENV
from tests.kafka_helpers import job_events, wait_committed

pytestmark = pytest.mark.integration
#: a group of its own: the session's gate (tests/conftest.py) runs in the default one
GROUP = "genloom-moderation-test-kill"
MODEL = ModelInfo(id="m", device="cpu", dtype="float32")
FIRST = ["The gate ", "checks whole ", "sentences."]
HELD = [" This one ", "is still "]
REST = ["being written.", " The end."]


#: each window mode, and how many of HELD it releases before the kill: windowed holds both (their window
#: has no sentence end yet); checked releases " This one " at once and holds "is still " (it could become
#: the blocked term "still water")
MODES = [({"GENLOOM_MODERATION_WINDOW_MODE": "windowed"}, 0),
         ({"GENLOOM_MODERATION_WINDOW_MODE": "checked", "GENLOOM_MODERATION_BLOCKLIST": "still water"}, 1)]


def gate_process(bootstrap: str, log_path, mode: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ, GENLOOM_KAFKA_BOOTSTRAP=bootstrap, GENLOOM_MODERATION_GROUP=GROUP, **FAST_STREAMS_ENV,
               **mode)
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "workers", "moderation"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def committed(bootstrap: str, tp: TopicPartition) -> int | None:
    consumer = clients.consumer(bootstrap, group_id=GROUP)
    await clients.start_client(consumer, bootstrap)
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


@pytest.mark.parametrize(("mode", "released"), MODES, ids=["windowed", "checked"])
async def test_a_killed_gate_loses_nothing_and_repeats_nothing(kafka_bootstrap, producer, tmp_path, mode, released):
    job = f"mod-kill-{mode['GENLOOM_MODERATION_WINDOW_MODE']}"
    worker = EventEmitter(producer, EVENTS_RAW, EventSource.WORKER)

    async def send(event_type, **fields):
        event = worker.build(event_type, job, 3, **fields)
        return await producer.send_and_wait(EVENTS_RAW, encode(event), key=job.encode())

    await send(Started, worker="w", model=MODEL)
    for text in FIRST:
        last_released = await send(TokenDelta, text=text, tokens=2)
    held = [await send(TokenDelta, text=text, tokens=2) for text in HELD]
    last_released = ([last_released] + held)[released]
    first_held = held[released]
    gate = gate_process(kafka_bootstrap, tmp_path / "gate.log", mode)
    try:
        await wait_committed(kafka_bootstrap, GROUP, last_released, timeout=90)
        tp = TopicPartition(EVENTS_RAW, first_held.partition)
        assert await committed(kafka_bootstrap, tp) == first_held.offset  # held: not committed
        os.killpg(gate.pid, signal.SIGKILL)
        gate.wait(timeout=10)
    finally:
        stop_process(gate)
    for text in REST:
        await send(TokenDelta, text=text, tokens=2)
    end = await send(Completed, usage=Usage(completion_tokens=14))
    again = gate_process(kafka_bootstrap, tmp_path / "gate.log", mode)
    try:
        events = await job_events(kafka_bootstrap, EVENTS, job, after_commit=(GROUP, end), timeout=90)
    finally:
        stop_process(again)
    recorded: dict[tuple, object] = {}
    for event in events:  # the fan-out's dedupe key: a repeat must be the very same event
        assert recorded.setdefault((event.source, event.attempt, event.seq), event) == event
    kept = sorted(recorded.values(), key=lambda e: e.seq)
    assert "".join(e.text for e in kept if isinstance(e, TokenDelta)) == "".join(FIRST + HELD + REST)
    assert [e.type for e in kept][0] == "started" and kept[-1].type == "completed"
