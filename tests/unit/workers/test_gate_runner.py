"""`GateRunner` on in-memory Kafka doubles: what reaches `genloom.events`, what is cancelled, committed."""

from __future__ import annotations

import asyncio
import json

from aiokafka import TopicPartition

from infra.fanout.logic import Malformed
from infra.kafka.codec import decode_event, encode
from infra.kafka.dlq import dead_letter_for
from infra.kafka.emitter import EventEmitter
from infra.moderation.moderator import blocklist_moderator
from infra.kafka.topics import CONTROL, DLQ, EVENTS, EVENTS_RAW
from schemas import ErrorCode, EventSource
from schemas.dlq import DeadLetter
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from tests.kafka_doubles import MemoryConsumer, MemoryLog, MemoryProducer
from workers.moderation.gate import ModerationGate
from workers.moderation.runner import GateRunner

MODEL = ModelInfo(id="m", device="cpu", dtype="float32")


async def gate_over(log: MemoryLog, classifier=None) -> tuple[GateRunner, MemoryConsumer]:
    consumer = MemoryConsumer(log, EVENTS_RAW)
    runner = GateRunner(ModerationGate(classifier, window_chars=16), consumer=consumer, producer=MemoryProducer(log))
    await runner.start()
    return runner, consumer


async def test_blocked_text_is_held_back_cancelled_and_committed_once_per_batch():
    log = MemoryLog()
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    await worker.emit(Started, "j", 1, worker="w", model=MODEL)
    for text in ["Once upon ", "a time there ", "was a forb", "idden word ", "and more"]:
        await worker.emit(TokenDelta, "j", 1, text=text, tokens=1)
    await worker.emit(Completed, "j", 1, usage=Usage(completion_tokens=5))
    runner, consumer = await gate_over(log, blocklist_moderator(["forbidden"]))
    await runner.run(burst=True)
    released = [decode_event(m.value) for m in log.read(EVENTS)]
    assert [e.type for e in released][-2:] == ["moderation", "completed"]
    assert "forb" not in "".join(e.text for e in released if isinstance(e, TokenDelta))
    assert [json.loads(m.value)["reason"] for m in log.read(CONTROL)] == ["content_filter"]
    assert consumer.commits == [{TopicPartition(EVENTS_RAW, 0): 7}]
    await runner.stop()


async def test_without_a_classifier_everything_passes_in_order():
    log = MemoryLog()
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    for text in ["a", "b", "c"]:
        await worker.emit(TokenDelta, "j", 1, text=text, tokens=1)
    runner, _ = await gate_over(log)
    await runner.run(burst=True)
    assert [decode_event(m.value).text for m in log.read(EVENTS)] == ["a", "b", "c"]


async def test_malformed_event_is_dead_lettered_and_the_rest_pass():
    log = MemoryLog()
    log.append(EVENTS_RAW, b'{"type": "nonsense", "job_id": "j"}', key=b"j")
    await EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER).emit(TokenDelta, "j", 1, text="ok",
                                                                                 tokens=1)
    runner, consumer = await gate_over(log)
    await runner.run(burst=True)
    (letter,) = [DeadLetter.model_validate_json(m.value) for m in log.read(DLQ)]
    assert (letter.code, letter.consumer, letter.job_id) == (ErrorCode.MALFORMED_MESSAGE, "genloom-moderation", "j")
    assert [decode_event(m.value).text for m in log.read(EVENTS)] == ["ok"]
    assert consumer.committed == {TopicPartition(EVENTS_RAW, 0): 2}


async def test_held_tokens_keep_their_offsets_uncommitted_and_a_new_gate_releases_them_once():
    """A gate that dies with tokens in a window (nothing committed past the first held one) is
    replaced by one that reads them again: every token reaches genloom.events, and each (source,
    attempt, seq) the fan-out keys on carries the same event every time it appears."""
    log = MemoryLog()
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    await worker.emit(Started, "j", 1, worker="w", model=MODEL)
    for text in ["The first sentence.", " Then a", " half"]:
        await worker.emit(TokenDelta, "j", 1, text=text, tokens=1)
    first, consumer = await gate_over(log, blocklist_moderator(["forbidden"]))
    await first.run(burst=True)
    tp = TopicPartition(EVENTS_RAW, 0)
    assert consumer.committed == {tp: 2}  # "started" and the first sentence are out; " Then a" is held
    await first.stop()  # dies: its window is gone
    for text in [" sentence.", " The end."]:
        await worker.emit(TokenDelta, "j", 1, text=text, tokens=1)
    await worker.emit(Completed, "j", 1, usage=Usage(completion_tokens=5))
    again = MemoryConsumer(log, EVENTS_RAW)
    again.committed = dict(consumer.committed)
    second = GateRunner(ModerationGate(blocklist_moderator(["forbidden"]), window_chars=16), consumer=again,
                        producer=MemoryProducer(log))
    await second.start()
    await second.run(burst=True)
    published = [decode_event(m.value) for m in log.read(EVENTS)]
    by_key: dict[tuple, object] = {}
    for event in published:
        assert by_key.setdefault((event.source, event.attempt, event.seq), event) == event
    deduped = sorted(by_key.values(), key=lambda e: e.seq)
    assert "".join(e.text for e in deduped if isinstance(e, TokenDelta)) == \
        "The first sentence. Then a half sentence. The end."
    assert deduped[-1].type == "completed" and again.committed == {tp: 7}
    await second.stop()


class _Counting:
    """Blocks "forbidden"; counts its calls."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def scores(self, texts):
        self.calls += 1
        return [{"blocklist": 1.0 if "forbidden" in t else 0.0} for t in texts]


async def test_the_windows_of_one_polled_batch_are_scored_in_one_classifier_call():
    from infra.moderation.moderator import Moderator
    from infra.moderation.policy import Policy, PolicyBook

    log = MemoryLog()
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    for job in ("a", "b", "c"):
        for text in ["One sentence.", " Another one.", " A forbidden one." if job == "b" else " Fine."]:
            await worker.emit(TokenDelta, job, 1, text=text, tokens=1)
        await worker.emit(Completed, job, 1, usage=Usage(completion_tokens=3))
    counting = _Counting()
    policy = Policy.build(thresholds={})
    moderator = Moderator(counting, PolicyBook(Policy(thresholds={**policy.thresholds, "blocklist": 0.5})))
    runner, _ = await gate_over(log, moderator)
    await runner.run(burst=True)
    released = [decode_event(m.value) for m in log.read(EVENTS)]
    assert counting.calls == 1  # nine windows, one call
    by_job = {j: [e.type for e in released if e.job_id == j] for j in ("a", "b", "c")}
    assert by_job["a"] == by_job["c"] == ["token", "token", "token", "completed"]
    assert by_job["b"] == ["token", "token", "moderation", "completed"]


async def _until(condition) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), 5)


async def _serve_batches(log: MemoryLog, commit_gap_s: float) -> tuple[MemoryConsumer, list[list[dict]]]:
    """A serving gate given three batches of tokens, one after another, each released before the next;
    the commits seen after each batch, then after stop."""
    consumer = MemoryConsumer(log, EVENTS_RAW)
    runner = GateRunner(ModerationGate(None), consumer=consumer, producer=MemoryProducer(log),
                        commit_gap_s=commit_gap_s)
    await runner.start()
    serving = asyncio.create_task(runner.run())
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    seen = []
    for batch in range(3):
        await worker.emit(TokenDelta, "j", 1, text=f"t{batch}", tokens=1)
        await _until(lambda: len(log.read(EVENTS)) == batch + 1)
        await asyncio.sleep(0.01)  # a commit on the loop's path would be sent by now
        seen.append(list(consumer.commits))
    await runner.stop()
    await serving
    seen.append(list(consumer.commits))
    return consumer, seen


async def test_commits_go_behind_the_loop_at_most_once_a_gap_and_the_last_at_stop():
    """The first batch's position is sent at once; the next two wait out the gap (no commit between one
    step's tokens and the next's); stop sends the last. With a gap of 0, each batch commits before the
    next poll, as the gate did before."""
    tp = TopicPartition(EVENTS_RAW, 0)
    consumer, seen = await _serve_batches(MemoryLog(), commit_gap_s=60)
    assert seen[:3] == [[{tp: 1}]] * 3
    assert seen[3] == [{tp: 1}, {tp: 3}] and consumer.committed == {tp: 3}

    consumer, seen = await _serve_batches(MemoryLog(), commit_gap_s=0)
    assert seen[:3] == [[{tp: 1}], [{tp: 1}, {tp: 2}], [{tp: 1}, {tp: 2}, {tp: 3}]]


async def test_a_revocation_sends_the_positions_owed_before_the_partitions_go():
    from infra.kafka.consume import FlushOnRevoke

    log = MemoryLog()
    consumer = MemoryConsumer(log, EVENTS_RAW)
    runner = GateRunner(ModerationGate(None), consumer=consumer, producer=MemoryProducer(log), commit_gap_s=60)
    await runner.start()
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    serving = asyncio.create_task(runner.run())
    for count, text in enumerate(["a", "b"], 1):
        await worker.emit(TokenDelta, "j", 1, text=text, tokens=1)
        await _until(lambda: len(log.read(EVENTS)) == count)  # noqa: B023 (awaited at once)
    await asyncio.sleep(0.01)
    tp = TopicPartition(EVENTS_RAW, 0)
    assert consumer.committed == {tp: 1}  # "b" is owed, waiting out the gap
    assert isinstance(consumer._listener, FlushOnRevoke)
    await consumer._listener.on_partitions_revoked({tp})
    assert consumer.committed == {tp: 2}
    await runner.stop()
    await serving


class RecordingWriter:
    """A replay writer that notes each write and what the consumer had committed when it came; it refuses
    the records at the indexes in `refuse`, as Redis refuses a key of the wrong type."""

    HEADER = ("genloom-applied", b"1")

    def __init__(self, consumer: MemoryConsumer, refuse: tuple[int, ...] = ()) -> None:
        self.consumer = consumer
        self.refuse = refuse
        self.writes: list[tuple[list[tuple[str, bytes]], dict]] = []

    async def write(self, released):
        self.writes.append(([(event.job_id, m.value) for m, event in released], dict(self.consumer.committed)))
        return [(i, Malformed(dead_letter_for(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key,
                                              value=m.value, consumer="gate", code=ErrorCode.INTERNAL_ERROR,
                                              error="WRONGTYPE")))
                for i, (m, _) in enumerate(released) if i in self.refuse]

    async def aclose(self) -> None:
        pass


async def test_a_poll_across_partitions_is_written_to_the_replay_logs_once_before_its_positions_settle():
    log = MemoryLog({EVENTS_RAW: 2, EVENTS: 2})
    for partition, job in ((0, "a"), (1, "b")):
        for seq, text in enumerate(["one ", "two"]):
            event = TokenDelta(job_id=job, seq=seq, attempt=1, source=EventSource.WORKER, text=text, tokens=1)
            log.append(EVENTS_RAW, encode(event), key=job.encode(), partition=partition)
    consumer = MemoryConsumer(log, EVENTS_RAW)
    writer = RecordingWriter(consumer)
    runner = GateRunner(ModerationGate(None), consumer=consumer, producer=MemoryProducer(log), replay=writer,
                        commit_gap_s=0)
    await runner.start()
    await runner.run(burst=True)
    (written, committed_then), = writer.writes  # one write for the whole poll, both partitions
    assert sorted(job for job, _ in written) == ["a", "a", "b", "b"]
    assert [value for _, value in written] == [m.value for m in log.read(EVENTS)]  # as published, in order
    assert committed_then == {}  # nothing settled before the write
    assert consumer.committed == {TopicPartition(EVENTS_RAW, 0): 2, TopicPartition(EVENTS_RAW, 1): 2}
    assert all(("genloom-applied", b"1") in m.headers for m in log.read(EVENTS))
    await runner.stop()


class HeldAcks(MemoryProducer):
    """A producer whose records are appended at once but acknowledged only when the test says so."""

    def __init__(self, log: MemoryLog) -> None:
        super().__init__(log)
        self.held: list[tuple[asyncio.Future, object]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None,
                   ring: bool = True) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.held.append((fut, self._log.append(topic, value, key, headers=headers)))
        return fut

    def acknowledge(self) -> None:
        for fut, meta in self.held:
            if not fut.done():
                fut.set_result(meta)


async def test_the_replay_logs_are_written_while_the_broker_acknowledges_and_positions_settle_after_both():
    """A client reads a released token without waiting for the broker's round trip: the write goes out
    with the sends, and nothing settles until every send is acknowledged."""
    log = MemoryLog({EVENTS_RAW: 1, EVENTS: 1})
    for seq, text in enumerate(["one ", "two"]):
        event = TokenDelta(job_id="a", seq=seq, attempt=1, source=EventSource.WORKER, text=text, tokens=1)
        log.append(EVENTS_RAW, encode(event), key=b"a")
    consumer = MemoryConsumer(log, EVENTS_RAW)
    producer = HeldAcks(log)
    writer = RecordingWriter(consumer)
    runner = GateRunner(ModerationGate(None), consumer=consumer, producer=producer, replay=writer, commit_gap_s=0)
    await runner.start()
    serving = asyncio.create_task(runner.run(burst=True))
    for _ in range(100):
        await asyncio.sleep(0)
        if writer.writes:
            break
    assert [job for job, _ in writer.writes[0][0]] == ["a", "a"]  # written...
    assert producer.held and not any(fut.done() for fut, _ in producer.held)  # ...before any acknowledgement
    await asyncio.sleep(0.05)
    assert consumer.committed == {} and not serving.done()  # held until the broker answers
    producer.acknowledge()
    await asyncio.wait_for(serving, 5)
    assert consumer.committed == {TopicPartition(EVENTS_RAW, 0): 2}
    await runner.stop()


async def test_a_record_redis_refused_goes_to_the_dlq_with_its_acknowledged_position():
    log = MemoryLog({EVENTS_RAW: 1, EVENTS: 1})
    for n in range(5):  # the events topic holds records already: the refused one's offset is not 0
        log.append(EVENTS, b"{}", key=b"other")
    for seq, text in enumerate(["one ", "two"]):
        event = TokenDelta(job_id="a", seq=seq, attempt=1, source=EventSource.WORKER, text=text, tokens=1)
        log.append(EVENTS_RAW, encode(event), key=b"a")
    consumer = MemoryConsumer(log, EVENTS_RAW)
    runner = GateRunner(ModerationGate(None), consumer=consumer, producer=MemoryProducer(log),
                        replay=RecordingWriter(consumer, refuse=(1,)), commit_gap_s=0)
    await runner.start()
    await runner.run(burst=True)
    letter, = [DeadLetter.model_validate_json(m.value) for m in log.read(DLQ)]
    refused = log.read(EVENTS)[6]  # the second released record
    assert (letter.topic, letter.partition, letter.offset) == (EVENTS, refused.partition, 6)
    assert letter.payload == refused.value.decode()
    await runner.stop()


async def test_with_its_own_replay_write_only_a_jobs_end_rings_the_events_topic():
    """Tokens the gate wrote into the replay logs itself go out on genloom.events without a doorbell
    ring: no genloom consumer of that topic waits for them (the fan-out passes them by; the memory writer
    and the cache filler want a job's end), so a decode step no longer wakes the streams process's three
    consumers. A job's end rings, and they fetch the tokens with it. Without the write, everything rings."""
    for replay in (True, False):
        log = MemoryLog({EVENTS_RAW: 1, EVENTS: 1})
        for event in _job("a"):
            log.append(EVENTS_RAW, encode(event), key=b"a")
        consumer = MemoryConsumer(log, EVENTS_RAW)
        producer = MemoryProducer(log)
        runner = GateRunner(ModerationGate(None), consumer=consumer, producer=producer, commit_gap_s=0,
                            replay=RecordingWriter(consumer) if replay else None)
        await runner.start()
        await runner.run(burst=True)
        types = [json.loads(m.value)["type"] for m in log.read(EVENTS)]
        assert types == ["started", "token", "token", "completed"]
        unrung = [json.loads(m.value)["type"] for m in producer.unrung]
        assert unrung == (["started", "token", "token"] if replay else [])
        await runner.stop()


def _job(job: str) -> list:
    return [Started(job_id=job, seq=0, attempt=1, source=EventSource.WORKER, worker="w", model=MODEL),
            *(TokenDelta(job_id=job, seq=seq, attempt=1, source=EventSource.WORKER, text=text, tokens=1)
              for seq, text in ((1, "one "), (2, "two"))),
            Completed(job_id=job, seq=3, attempt=1, source=EventSource.WORKER, text="one two",
                      usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3), finish_reason="stop")]
