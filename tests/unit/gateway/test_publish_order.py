"""A job's `accepted` is in its replay log before its request is on any topic, so nothing acting on the
request can get an event of the job applied before it (a terminal event would drop it)."""

from __future__ import annotations

import asyncio

import pytest

from gateway import lifecycle
from gateway.body import build_request
from gateway.errors import ApiError
from infra.kafka.topics import EVENTS
from schemas.enums import ErrorCode, EventType


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
    def __init__(self, steps: list[tuple]) -> None:
        self.steps = steps

    async def apply(self, event, payload: bytes, now: float):
        self.steps.append(("apply", event.type, payload))

    async def acknowledged(self, job_id: str) -> None:
        self.steps.append(("acknowledged", job_id))


def _service(steps: list[tuple], failing: tuple[str, ...] = ()) -> lifecycle.JobService:
    return lifecycle.JobService(Store(steps), Producer(steps, failing), max_inflight=1, retry_after_s=1,
                                publish_timeout_s=5)


async def test_accepted_is_in_the_replay_log_before_the_request_is_published():
    steps: list[tuple] = []
    request = build_request({"modality": "image", "params": {"prompt": "a cat"}}, "t", None)
    await _service(steps)._publish_job(request)
    assert [s[:2] for s in steps] == [("apply", EventType.ACCEPTED), ("send", "genloom.jobs.image"),
                                      ("acknowledged", request.job_id), ("send", EVENTS)]
    # the copy on genloom.events is the very payload applied, so the fan-out drops it as a duplicate
    assert steps[0][2] == steps[3][2]


async def test_a_request_the_broker_refuses_answers_503_with_accepted_recorded_for_the_retry():
    steps: list[tuple] = []
    request = build_request({"modality": "image", "params": {"prompt": "a cat"}}, "t", None)
    with pytest.raises(ApiError) as info:
        await _service(steps, failing=("genloom.jobs.image",))._publish_job(request)
    assert info.value.code == ErrorCode.BACKEND_UNAVAILABLE
    assert [s[:2] for s in steps] == [("apply", EventType.ACCEPTED), ("send", "genloom.jobs.image")]
