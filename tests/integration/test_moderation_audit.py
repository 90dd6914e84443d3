"""The gate's decisions reach their tenant's moderation audit through the fan-out (which knows each
job's tenant), with the content only as a hash."""

from __future__ import annotations

import pytest

from infra.redis.audit import ModerationAudit
from infra.redis.client import connect
from infra.redis.jobstore import Appended, JobStore
from schemas.enums import EventSource, FinishReason, Modality
from schemas.events import Accepted, Completed, ModerationVerdict, Usage
from infra.fanout.handler import FanoutHandler, RawMessage

pytestmark = pytest.mark.integration
DIGEST = "ab" * 32


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


def messages(*events) -> list[RawMessage]:
    return [RawMessage("genloom.events", 0, i, e.job_id.encode(), e.model_dump_json().encode())
            for i, e in enumerate(events)]


async def test_a_blocked_output_is_audited_for_its_tenant(redis):
    audit = ModerationAudit(redis)
    handler = FanoutHandler(JobStore(redis, job_ttl_s=60), consumer="test", audit=audit)
    job = "jaudit0000000000000000000000000001"
    gate = EventSource.MODERATION
    outcomes = await handler.handle_batch(messages(
        Accepted(job_id=job, seq=0, source=EventSource.GATEWAY, tenant="t-audit", client_job_id="mine-1",
                 modality=Modality.TEXT),
        ModerationVerdict(job_id=job, seq=0, attempt=2, source=gate, target="output", allowed=False,
                          categories=["violence"], score=0.9, scores={"violence": 0.9, "hate": 0.0}, model="m",
                          content_sha256=DIGEST),
        Completed(job_id=job, seq=1, attempt=2, source=gate, finish_reason=FinishReason.CONTENT_FILTER,
                  usage=Usage()),
    ))
    assert all(isinstance(o, Appended) for o in outcomes)
    [(_, entry)] = await audit.query("t-audit")
    assert entry["job_id"] == "mine-1" and entry["stage"] == "output" and entry["action"] == "blocked"
    assert entry["categories"] == ["violence"] and entry["scores"] == {"violence": 0.9}
    assert entry["content_sha256"] == DIGEST
    assert await audit.query("t-other") == []
