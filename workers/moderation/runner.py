"""The moderation gate's Kafka loop: `genloom.events.raw` in, `genloom.events` out."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from infra.kafka.codec import decode_event, encode
from infra.kafka.consume import ConsumeLoop, Record
from infra.kafka.dlq import describe_event_error
from infra.kafka.topics import CONTROL, EVENTS
from schemas.control import CancelJob
from schemas.events import JobEvent

from .gate import ModerationGate

GROUP = "genloom-moderation"


class GateRunner:
    """Runs `ModerationGate` on `genloom.events.raw`. `consumer` (subscribed to the raw events in
    GROUP) and `producer` are built at the edge (`workers.wiring`) and started here."""

    def __init__(self, gate: ModerationGate, *, consumer: Any, producer: Any, group: str = GROUP) -> None:
        self._gate = gate
        self._consumer = consumer
        self._producer = producer
        self._loop = ConsumeLoop(consumer, decode=decode_event, expected="JobEvent", group=group,
                                 on_batch=self._pass, dead_letters=producer, describe=describe_event_error)

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()

    async def stop(self) -> None:
        self._loop.stop()
        await self._consumer.stop()
        await self._producer.stop()

    async def run(self, *, burst: bool = False) -> None:
        """Serve until stop() is called; with `burst`, return once the raw events are drained."""
        await self._loop.run(burst=burst)

    async def _pass(self, tp: Hashable, records: list[Record[JobEvent]]) -> None:
        pending = []
        settled: dict[Hashable, list[int]] = {}
        for record in records:  # hot loop: one pass, sends pipelined, acks awaited per batch
            out = self._gate.on_event(record.value, (record.tp, record.offset))
            for released in out.publish:
                pending.append(await self._producer.send(EVENTS, encode(released), key=released.job_id.encode()))
            for job_id in out.cancel:
                cancel = CancelJob(job_id=job_id, tenant="moderation", reason="content_filter")
                pending.append(await self._producer.send(CONTROL, encode(cancel), key=job_id.encode()))
            for where, offset in out.settled:
                settled.setdefault(where, []).append(offset)
        if pending:
            await asyncio.gather(*pending)
        # only what was published or dropped for good: a token held in a window keeps its offset (and
        # every later one of its partition) uncommitted, so a gate that dies loses none of it
        for where, offsets in settled.items():
            await self._loop.done(where, *offsets)
