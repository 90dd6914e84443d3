"""A job's `accepted` is in its replay log before its request is on any topic, so nothing acting on the
request can get an event of the job applied before it (a terminal event would drop it)."""

from __future__ import annotations

import asyncio

import pytest

from gateway import lifecycle
from gateway.body import build_request
from gateway.errors import ApiError
from infra.kafka.topics import EVENTS
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import Admitted, Existing
from schemas.enums import ErrorCode, EventType, JobStatus, Modality
from schemas.requests import qualified


class Producer:
    """Acknowledges every send at once, or fails the sends of `failing` topics."""

    def __init__(self, steps: list[tuple], failing: tuple[str, ...] = ()) -> None:
        self.steps, self.failing = steps, failing

    async def send(self, topic, value, key=None, headers=None) -> asyncio.Future:
        self.steps.append(("send", topic, value))
        future = asyncio.get_running_loop().create_future()
        if topic in self.failing:
            future.set_exception(OSError("broker gone"))
        else:
            future.set_result(None)
        return future


class Store:
    """Admits (applying the first event it is given, as `JobStore.admit` does) or finds the job existing."""

    def __init__(self, steps: list[tuple], outcome=Admitted()) -> None:
        self.steps, self.outcome = steps, outcome

    async def admit(self, job_id: str, record: JobRecord, *, max_inflight: int, now: float, first=None):
        if isinstance(self.outcome, Admitted) and first is not None:
            self.steps.append(("admit+apply", first[0].type, first[1]))
        return self.outcome

    async def load(self, job_id: str) -> JobRecord:
        return JobRecord(status=JobStatus.QUEUED, tenant="t", modality=Modality.IMAGE, fingerprint="f")

    async def apply(self, event, payload: bytes, now: float):
        self.steps.append(("apply", event.type, payload))

    async def acknowledged(self, job_id: str) -> None:
        self.steps.append(("acknowledged", job_id))


def _service(steps: list[tuple], failing: tuple[str, ...] = (), outcome=Admitted()) -> lifecycle.JobService:
    return lifecycle.JobService(Store(steps, outcome), Producer(steps, failing), max_inflight=1, retry_after_s=1,
                                publish_timeout_s=5)


def _request():
    return build_request({"modality": "image", "params": {"prompt": "a cat"}}, "t", None)


async def test_accepted_is_in_the_replay_log_before_the_request_is_published():
    """Admission applies it in its own call: no round trip of its own before the publish."""
    steps: list[tuple] = []
    request = _request()
    await _service(steps).submit(request)
    assert [s[:2] for s in steps] == [("admit+apply", EventType.ACCEPTED), ("send", "genloom.jobs.image"),
                                      ("acknowledged", qualified(request).job_id), ("send", EVENTS)]
    # the copy on genloom.events is the very payload applied, so the fan-out drops it as a duplicate
    assert steps[0][2] == steps[3][2]


async def test_a_retry_of_an_unacknowledged_job_applies_accepted_again_before_it_publishes():
    """A record admitted without its `accepted` (by a gateway before admission applied it) gets it then; for
    any other the apply is a duplicate, dropped."""
    steps: list[tuple] = []
    request = _request()
    await _service(steps, outcome=Existing("f", "t", unacked=True))._republish(request)
    assert [s[:2] for s in steps] == [("apply", EventType.ACCEPTED), ("send", "genloom.jobs.image"),
                                      ("acknowledged", request.job_id), ("send", EVENTS)]


async def test_a_request_the_broker_refuses_answers_503_with_accepted_recorded_for_the_retry():
    steps: list[tuple] = []
    with pytest.raises(ApiError) as info:
        await _service(steps, failing=("genloom.jobs.image",)).submit(_request())
    assert info.value.code == ErrorCode.BACKEND_UNAVAILABLE
    assert [s[:2] for s in steps] == [("admit+apply", EventType.ACCEPTED), ("send", "genloom.jobs.image")]
