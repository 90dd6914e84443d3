"""`JobRunner`'s logic on in-memory Kafka doubles: ordering, commits, cancels, dead letters."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from infra.kafka.codec import decode_event, encode
from infra.kafka.topics import CONTROL, DLQ, EVENTS_RAW, jobs_topic
from schemas import ErrorCode
from schemas.control import CancelJob
from schemas.dlq import DeadLetter
from schemas.enums import Modality
from schemas.events import ModelInfo, Usage
from schemas.requests import parse_request
from tests.kafka_doubles import MemoryConsumer, MemoryLog, MemoryProducer
from tests.kafka_helpers import serving, wait_until
from workers.errors import JobError
from workers.runner import JobRunner

TOPIC = jobs_topic(Modality.TEXT)
TP = TopicPartition(TOPIC, 0)


class EchoHandler:
    """Completes each job with its prompt; a prompt of "hold" waits for `release`, "bad" fails check."""

    modality = Modality.TEXT
    max_concurrency = 4

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.ran: list[str] = []

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(id="echo", device="cpu", dtype="none")

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def check(self, request) -> None:
        if request.params.messages[0].content == "bad":
            raise JobError(ErrorCode.INVALID_PARAMETER, "bad prompt")

    async def run(self, ctx) -> None:
        prompt = ctx.request.params.messages[0].content
        self.ran.append(ctx.job_id)
        if prompt == "hold":
            await self.release.wait()
        await ctx.token(prompt, 1)
        await ctx.completed(usage=Usage(completion_tokens=1), text=prompt)


def job(job_id: str, prompt: str = "hi", tenant: str = "default", priority: int = 5) -> bytes:
    return encode(parse_request({"job_id": job_id, "modality": "text", "tenant": tenant, "priority": priority,
                                 "params": {"messages": [{"role": "user", "content": prompt}]}}))


def make_runner(log: MemoryLog, handler=None, **kwargs):
    jobs, control = MemoryConsumer(log), MemoryConsumer(log)
    runner = JobRunner(handler or EchoHandler(), producer=MemoryProducer(log), jobs=jobs, control=control,
                       worker_id="w-1", **kwargs)
    return runner, jobs


def events(log: MemoryLog, job_id: str) -> list:
    return [decode_event(m.value) for m in log.read(EVENTS_RAW) if m.key == job_id.encode()]


async def test_burst_runs_every_queued_job_and_commits_past_them():
    log = MemoryLog()
    for i in range(3):
        log.append(TOPIC, job(f"j{i}", f"p{i}"), key=f"j{i}".encode())
    runner, jobs = make_runner(log)
    await runner.start()
    await runner.run(burst=True)
    for i in range(3):
        assert [e.type for e in events(log, f"j{i}")] == ["started", "token", "completed"]
        assert events(log, f"j{i}")[-1].text == f"p{i}"
    assert jobs.committed == {TP: 3}
    await runner.stop()


async def test_offset_is_committed_only_after_the_earlier_job_ended():
    log = MemoryLog()
    handler = EchoHandler()
    log.append(TOPIC, job("slow", "hold"))
    log.append(TOPIC, job("fast"))
    runner, jobs = make_runner(log, handler)
    async with serving(runner):
        await wait_until(lambda: [e.type for e in events(log, "fast")][-1:] == ["completed"])
        assert jobs.committed.get(TP, 0) == 0  # the fast job ended, but the slow one before it has not
        handler.release.set()
        await wait_until(lambda: jobs.committed == {TP: 2})


async def test_a_full_worker_pauses_its_partitions_and_resumes_when_a_job_ends():
    log = MemoryLog()
    handler = EchoHandler()
    log.append(TOPIC, job("a", "hold"))
    log.append(TOPIC, job("b"))
    runner, jobs = make_runner(log, handler, max_concurrency=1, read_ahead=1)
    async with serving(runner):
        await wait_until(lambda: jobs.paused() == {TP})  # one job runs, one is read ahead: full
        assert runner.queued == 1
        assert handler.ran == ["a"]
        handler.release.set()
        await wait_until(lambda: jobs.committed == {TP: 2})
        assert handler.ran == ["a", "b"]
        await wait_until(lambda: jobs.paused() == set())


async def test_malformed_job_is_dead_lettered_failed_and_committed():
    log = MemoryLog()
    log.append(TOPIC, b'{"job_id": "broken-1", "modality": "text", "params": {}}')
    log.append(TOPIC, b"\x00garbage")
    runner, jobs = make_runner(log)
    await runner.start()
    await runner.run(burst=True)
    letters = [DeadLetter.model_validate_json(m.value) for m in log.read(DLQ)]
    assert [(lt.job_id, lt.offset) for lt in letters] == [("broken-1", 0), (None, 1)]
    assert letters[0].consumer == "genloom-workers-text" and letters[1].code is ErrorCode.INVALID_JSON
    (failed,) = events(log, "broken-1")
    assert failed.type == "failed" and failed.code is letters[0].code
    assert jobs.committed == {TP: 2}


async def test_a_cancel_read_before_the_job_ends_it_without_running_it():
    log = MemoryLog()
    handler = EchoHandler()
    log.append(CONTROL, encode(CancelJob(job_id="gone", tenant="t", reason="user")))
    log.append(TOPIC, job("gone"))
    runner, _ = make_runner(log, handler)
    await runner.start()
    await runner.run(burst=True)
    assert [(e.type, e.reason) for e in events(log, "gone")] == [("cancelled", "user")]
    assert handler.ran == []


async def test_a_cancel_stops_a_running_job():
    log = MemoryLog()
    handler = EchoHandler()

    async def wait_for_cancel(ctx):
        handler.ran.append(ctx.job_id)
        await ctx.wait_cancelled()
        ctx.checkpoint()

    handler.run = wait_for_cancel
    log.append(TOPIC, job("long"))
    runner, jobs = make_runner(log, handler)
    async with serving(runner):
        await wait_until(lambda: handler.ran == ["long"])
        log.append(CONTROL, encode(CancelJob(job_id="long", tenant="t", reason="enough")))
        await wait_until(lambda: jobs.committed == {TP: 1})
        assert [(e.type, getattr(e, "reason", None)) for e in events(log, "long")][-1] == ("cancelled", "enough")


async def test_check_failure_is_a_failed_event_with_the_handlers_code():
    log = MemoryLog()
    log.append(TOPIC, job("nope", "bad"))
    runner, _ = make_runner(log)
    await runner.start()
    await runner.run(burst=True)
    (failed,) = events(log, "nope")
    assert (failed.code, failed.message) == (ErrorCode.INVALID_PARAMETER, "bad prompt")


async def test_a_poll_error_is_retried_after_a_backoff():
    log = MemoryLog()
    log.append(TOPIC, job("after-hiccup"))
    runner, jobs = make_runner(log)
    jobs.failing_polls = 2
    await runner.start()
    await runner.run(burst=True)
    assert jobs.failing_polls == 0 and events(log, "after-hiccup")[-1].type == "completed"


async def test_a_tenants_backlog_does_not_delay_another_tenants_job_by_more_than_one_batch():
    log = MemoryLog()
    handler = EchoHandler()
    for i in range(50):
        log.append(TOPIC, job(f"a{i}", tenant="tenant-a"))
    log.append(TOPIC, job("b0", tenant="tenant-b"))
    runner, jobs = make_runner(log, handler)
    await runner.start()
    await runner.run(burst=True)
    assert sorted(handler.ran) == sorted([f"a{i}" for i in range(50)] + ["b0"])
    assert handler.ran.index("b0") <= handler.max_concurrency  # at most one batch of a's jobs before it
    assert jobs.committed == {TP: 51}


async def test_without_read_ahead_a_backlog_delays_the_next_tenant():
    log = MemoryLog()
    handler = EchoHandler()
    for i in range(10):
        log.append(TOPIC, job(f"a{i}", tenant="tenant-a"))
    log.append(TOPIC, job("b0", tenant="tenant-b"))
    runner, _ = make_runner(log, handler, read_ahead=0)
    await runner.start()
    await runner.run(burst=True)
    # b's job is read only once the backlog is (nearly) all started: more than one batch before it
    assert handler.ran.index("b0") > handler.max_concurrency


async def test_priority_orders_one_tenants_queued_jobs():
    log = MemoryLog()
    handler = EchoHandler()
    log.append(TOPIC, job("first", "hold"))
    runner, jobs = make_runner(log, handler, max_concurrency=1)
    async with serving(runner):
        await wait_until(lambda: handler.ran == ["first"])
        log.append(TOPIC, job("lazy", priority=9))
        log.append(TOPIC, job("urgent", priority=0))
        await wait_until(lambda: runner.queued == 2)
        handler.release.set()
        await wait_until(lambda: jobs.committed == {TP: 3})
        assert handler.ran == ["first", "urgent", "lazy"]


async def test_a_cancel_ends_a_queued_job_at_once_and_commits_only_after_the_earlier_job():
    log = MemoryLog()
    handler = EchoHandler()
    log.append(TOPIC, job("running", "hold"))
    log.append(TOPIC, job("queued"))
    runner, jobs = make_runner(log, handler, max_concurrency=1)
    async with serving(runner):
        await wait_until(lambda: runner.queued == 1)
        log.append(CONTROL, encode(CancelJob(job_id="queued", tenant="t", reason="user")))
        await wait_until(lambda: [e.type for e in events(log, "queued")] == ["cancelled"])
        assert handler.ran == ["running"] and runner.queued == 0
        assert jobs.committed.get(TP, 0) == 0  # the job before it is still running
        handler.release.set()
        await wait_until(lambda: jobs.committed == {TP: 2})
        assert handler.ran == ["running"]


async def test_queued_jobs_of_a_revoked_partition_are_dropped_uncommitted():
    log = MemoryLog()
    handler = EchoHandler()
    log.append(TOPIC, job("running", "hold"))
    log.append(TOPIC, job("queued"))
    runner, jobs = make_runner(log, handler, max_concurrency=1)
    async with serving(runner):
        await wait_until(lambda: runner.queued == 1)
        await runner._drop_partitions({TP})
        assert runner.queued == 0 and runner.in_flight == 0
        assert handler.ran == ["running"] and events(log, "queued") == []
        assert jobs.committed.get(TP, 0) == 0


async def test_a_handler_whose_model_info_raises_still_ends_every_job():
    """A bug in how a handler describes its model (an engine process's tokenizer lacking a field, once)
    crashed the job's task before its first event: no terminal event, the client waited forever."""

    class Broken(EchoHandler):
        @property
        def model_info(self) -> ModelInfo:
            raise AttributeError("no such field")

    log = MemoryLog()
    log.append(TOPIC, job("j", "hello"), key=b"j")
    runner, jobs = make_runner(log, Broken())
    await runner.start()
    await runner.run(burst=True)
    got = events(log, "j")
    assert [e.type for e in got] == ["started", "token", "completed"] and got[-1].text == "hello"
    assert got[0].model.id == "unknown"  # the started event says the model is unknown
    assert jobs.committed == {TP: 1}
    await runner.stop()
