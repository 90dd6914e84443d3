"""A poll's events reach Redis slice by slice: each slice of `chunk` events is decoded and applied,
published, before the next one is read, in order; outcomes stay in message order, poison included."""

from __future__ import annotations

import uuid

import pytest

from infra.redis import keys
from infra.redis.jobstore import Appended, JobStore
from schemas.enums import EventSource
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from infra.fanout.handler import FanoutHandler, RawMessage
from infra.fanout.logic import Malformed

pytestmark = pytest.mark.integration

W = EventSource.WORKER


class SeeingStore(JobStore):
    """The real store; at each batch it applies, notes how many entries the job's log held already."""

    def __init__(self, *args, job_id: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_id = job_id
        self.seen: list[tuple[int, int]] = []  # (entries in the log before the call, events in the call)

    async def apply_batch(self, items, now):
        self.seen.append((await self._redis.xlen(keys.replay_log(self.job_id)), len(items)))
        return await super().apply_batch(items, now)


@pytest.fixture
async def redis(edge_redis):
    return edge_redis


def _burst(job_id: str, tokens: int) -> list[RawMessage]:
    events = [Started(job_id=job_id, seq=0, attempt=1, source=W, worker="w",
                      model=ModelInfo(id="tiny", device="cpu", dtype="float32"))]
    events += [TokenDelta(job_id=job_id, seq=1 + i, attempt=1, source=W, text="a", tokens=1) for i in range(tokens)]
    events.append(Completed(job_id=job_id, seq=1 + tokens, attempt=1, source=W,
                            usage=Usage(completion_tokens=tokens), text="a" * tokens))
    return [RawMessage("genloom.events", 0, i, job_id.encode(), e.model_dump_json().encode())
            for i, e in enumerate(events)]


async def test_a_burst_is_applied_and_published_slice_by_slice_in_order(redis):
    job_id = f"slices-{uuid.uuid4().hex[:6]}"
    store = SeeingStore(redis, job_ttl_s=60, job_id=job_id)
    outcomes = await FanoutHandler(store, consumer="test", chunk=4).handle_batch(_burst(job_id, 8))  # 10 events
    assert outcomes == [Appended(i, None) for i in range(1, 11)]
    # each slice found the ones before it written: three calls, not one after the whole poll was read
    assert store.seen == [(0, 4), (4, 4), (8, 2)]
    entries = await store.entries(job_id)
    assert [e.id for e in entries] == list(range(1, 11)) and entries[-1].terminal


async def test_poison_in_a_later_slice_keeps_every_outcome_in_its_place(redis):
    job_id, poison = f"slices-{uuid.uuid4().hex[:6]}", f"poison-{uuid.uuid4().hex[:6]}"
    await redis.set(keys.job_record(poison), "not a hash")  # every script call on it fails: WRONGTYPE
    burst = _burst(job_id, 3)
    bad = RawMessage("genloom.events", 0, 99, poison.encode(),
                     TokenDelta(job_id=poison, seq=0, attempt=1, source=W, text="x", tokens=1).model_dump_json().encode())
    garbage = RawMessage("genloom.events", 0, 100, None, b"{not json")
    messages = burst[:3] + [bad] + burst[3:] + [garbage]
    outcomes = await FanoutHandler(JobStore(redis, job_ttl_s=60), consumer="test", chunk=2).handle_batch(messages)
    assert isinstance(outcomes[3], Malformed) and "WRONGTYPE" in outcomes[3].letter.error
    assert isinstance(outcomes[-1], Malformed)
    assert [o for i, o in enumerate(outcomes) if i not in (3, len(outcomes) - 1)] == [
        Appended(i, None) for i in range(1, 6)]
