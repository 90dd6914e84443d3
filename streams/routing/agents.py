"""The routing agent: thin; the decisions are in logic.py."""

from __future__ import annotations

import faust

from infra.kafka.codec import encode
from infra.kafka.topics import ACCEPTED_HEADER, DLQ
from schemas.enums import EventSource
from schemas.events import Accepted, Failed

from ..app import Topics
from .logic import Rejected, route


def register(app: faust.App, topics: Topics, max_bytes: int, signing_key: bytes | None = None) -> None:
    dlq = app.topic(DLQ, internal=False, value_type=bytes, value_serializer="raw", key_serializer="raw")

    @app.agent(topics.requests, name="genloom.routing")
    async def route_requests(stream):
        async for event in stream.events():
            msg = event.message
            headers = list(msg.headers or ())
            decision = route(
                topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key,
                value=msg.value, max_bytes=max_bytes, consumer=app.conf.id,
                headers=headers, signing_key=signing_key,
            )
            if isinstance(decision, Rejected):
                await dlq.send(key=msg.key, value=encode(decision.letter))
                if decision.job_id:
                    failed = Failed(
                        job_id=decision.job_id, seq=0, source=EventSource.STREAMS,
                        code=decision.code, message=decision.message,
                    )
                    await topics.events.send(key=decision.job_id.encode(), value=encode(failed))
                continue
            request = decision.request
            if ACCEPTED_HEADER not in dict(headers):
                accepted = Accepted(
                    job_id=request.job_id, seq=0, source=EventSource.STREAMS,
                    tenant=request.tenant, client_job_id=request.client_job_id, modality=request.modality,
                    model=request.model,
                )
                await topics.events.send(key=request.job_id.encode(), value=encode(accepted))
            await topics.jobs[request.modality].send(key=decision.key, value=decision.value,
                                                     headers=decision.headers or None)
