"""A job's `started` held for its first output (`GENLOOM_WORKER_STARTED_HOLD_MS`): sent with it, in order,
by the hold's end when no output comes, before an end without output, and never after its attempt left."""

from __future__ import annotations

import asyncio
import time

from schemas import ErrorCode
from schemas.events import Usage
from tests.kafka_doubles import MemoryLog
from tests.kafka_helpers import serving, wait_until
from tests.unit.workers.test_runner import TOPIC, TP, EchoHandler, events, job, make_runner
from workers.errors import JobError


class FirstOutputGate(EchoHandler):
    """Waits for `release` before its first output (a prefill); "boom" fails before any output."""

    async def run(self, ctx) -> None:
        prompt = ctx.request.params.messages[0].content
        self.ran.append(ctx.job_id)
        await self.release.wait()
        if prompt == "boom":
            raise JobError(ErrorCode.GENERATION_ERROR, "the engine failed", retryable=True)
        await ctx.token(prompt, 1)
        await ctx.token("!", 1)
        await ctx.completed(usage=Usage(completion_tokens=2), text=prompt + "!")


def types(log, job_id):
    return [e.type for e in events(log, job_id)]


def one_job(job_id, prompt="hi", **runner_kwargs):
    """A log holding one job, a handler that waits before its first output, and a runner over both."""
    log, handler = MemoryLog(), FirstOutputGate()
    log.append(TOPIC, job(job_id, prompt), key=job_id.encode())
    runner, jobs = make_runner(log, handler, **runner_kwargs)
    return log, handler, runner, jobs


async def test_started_waits_for_the_first_output_and_goes_out_before_it():
    log, handler, runner, _ = one_job("a", started_hold_s=30.0)
    async with serving(runner):
        await wait_until(lambda: handler.ran == ["a"])
        for _ in range(20):  # the handler is prefilling: nothing of the job is out yet
            await asyncio.sleep(0.001)
        assert types(log, "a") == []
        released_at = time.time()
        handler.release.set()
        await wait_until(lambda: types(log, "a")[-1:] == ["completed"])
    sent = events(log, "a")
    assert [e.type for e in sent] == ["started", "token", "token", "completed"]
    assert [e.seq for e in sent] == sorted(e.seq for e in sent)  # numbered when taken, sent in that order
    assert sent[0].ts < released_at  # its time is when the job started, not when it was sent (after the release)


async def test_started_goes_out_when_the_hold_ends_without_output():
    log, handler, runner, _ = one_job("slow", started_hold_s=0.02)
    async with serving(runner):
        await wait_until(lambda: types(log, "slow") == ["started"])  # the handler has emitted nothing
        handler.release.set()
        await wait_until(lambda: types(log, "slow")[-1:] == ["completed"])
    assert types(log, "slow") == ["started", "token", "token", "completed"]  # once, first


async def test_a_job_that_fails_before_any_output_still_sends_started_first():
    log, handler, runner, _ = one_job("f", "boom", started_hold_s=30.0)
    handler.release.set()
    async with serving(runner):
        await wait_until(lambda: types(log, "f")[-1:] == ["failed"])
    assert types(log, "f") == ["started", "failed"]


async def test_a_held_start_of_a_job_whose_partition_moved_is_never_sent():
    log, handler, runner, jobs = one_job("moved", started_hold_s=0.05)
    async with serving(runner):
        await wait_until(lambda: handler.ran == ["moved"])
        await runner._drop_partitions({TP})  # its next owner runs it, with a `started` of its own
        await asyncio.sleep(0.15)  # past the hold
        assert types(log, "moved") == []
        assert jobs.committed.get(TP, 0) == 0


async def test_without_a_hold_started_goes_out_at_once():
    log, handler, runner, _ = one_job("now")
    async with serving(runner):
        await wait_until(lambda: types(log, "now") == ["started"])
        handler.release.set()
        await wait_until(lambda: types(log, "now")[-1:] == ["completed"])
