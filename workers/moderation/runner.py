"""The moderation gate's Kafka loop: `genloom.events.raw` in, `genloom.events` out."""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from infra.kafka import clients
from infra.kafka.codec import decode_event, encode
from infra.kafka.dlq import dead_letter_for, send_dead_letter
from infra.kafka.topics import CONTROL, EVENTS, EVENTS_RAW
from schemas.control import CancelJob
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error

from .gate import ModerationGate

log = logging.getLogger(__name__)

GROUP = "genloom-moderation"


class GateRunner:
    def __init__(self, gate: ModerationGate, *, bootstrap: str, fetch_max_wait_ms: int = 10,
                 session_timeout_ms: int = 6000, heartbeat_interval_ms: int = 1000) -> None:
        self._gate = gate
        self._bootstrap = bootstrap
        self._consumer_kwargs = dict(fetch_max_wait_ms=fetch_max_wait_ms,
                                     session_timeout_ms=session_timeout_ms,
                                     heartbeat_interval_ms=heartbeat_interval_ms)
        self._stopping = asyncio.Event()
        self._producer = None
        self._consumer = None

    async def start(self) -> None:
        self._producer = clients.producer(self._bootstrap, client_id="genloom-moderation")
        await clients.start_client(self._producer, self._bootstrap)
        self._consumer = clients.consumer(self._bootstrap, EVENTS_RAW, group_id=GROUP,
                                          client_id="genloom-moderation", max_poll_records=500,
                                          **self._consumer_kwargs)
        await clients.start_client(self._consumer, self._bootstrap)

    async def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self._consumer.getmany(timeout_ms=100)
            except Exception as exc:
                log.warning("poll failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, messages in batches.items():
                pending = []
                for msg in messages:  # hot loop: one pass, sends pipelined, acks awaited per batch
                    try:
                        event = decode_event(msg.value)
                    except (ValidationError, ValueError) as exc:
                        code, text = (describe_validation_error(exc) if isinstance(exc, ValidationError)
                                      else (ErrorCode.MALFORMED_MESSAGE, str(exc)))
                        await send_dead_letter(self._producer, dead_letter_for(
                            topic=tp.topic, partition=tp.partition, offset=msg.offset, key=msg.key,
                            value=msg.value, consumer=GROUP, code=code, error=text))
                        continue
                    out = self._gate.on_event(event)
                    for released in out.publish:
                        pending.append(await self._producer.send(
                            EVENTS, encode(released), key=released.job_id.encode()))
                    for job_id in out.cancel:
                        pending.append(await self._producer.send(
                            CONTROL, encode(CancelJob(job_id=job_id, tenant="moderation",
                                                      reason="content_filter")),
                            key=job_id.encode()))
                if pending:
                    await asyncio.gather(*pending)
                await self._consumer.commit({tp: messages[-1].offset + 1})
