"""`ConsumeLoop` on in-memory doubles: burst drains, bad messages go to the DLQ, commits follow `done`."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from infra.kafka.consume import ConsumeLoop
from infra.kafka.topics import DLQ
from schemas import ErrorCode
from schemas.dlq import DeadLetter
from tests.kafka_doubles import MemoryConsumer, MemoryLog, MemoryProducer

TOPIC = "t"


def decode_number(value: bytes) -> int:
    return int(value)


async def started(log: MemoryLog, *topics: str) -> MemoryConsumer:
    consumer = MemoryConsumer(log, *topics)
    await consumer.start()
    return consumer


async def test_burst_drains_every_partition_and_commits_what_was_done():
    log = MemoryLog({TOPIC: 2})
    for i in range(5):
        log.append(TOPIC, str(i).encode(), partition=i % 2)
    consumer = await started(log, TOPIC)
    seen = []

    async def on_batch(tp, records):
        seen.extend(r.value for r in records)
        await loop.done(tp, *(r.offset for r in records))

    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_batch=on_batch)
    await loop.run(burst=True)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert consumer.committed == {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 2}


async def test_nothing_is_committed_for_records_not_done():
    log = MemoryLog()
    log.append(TOPIC, b"1")
    consumer = await started(log, TOPIC)

    async def ignore(tp, records):
        pass

    await ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_batch=ignore).run(burst=True)
    assert consumer.committed == {}


async def test_undecodable_messages_are_dead_lettered_reported_and_done():
    log = MemoryLog()
    log.append(TOPIC, b"", key=b"k0")
    log.append(TOPIC, b"seven", key=b"k1")
    log.append(TOPIC, b"8")
    consumer = await started(log, TOPIC)
    rejected, good = [], []

    async def on_batch(tp, records):
        good.extend(r.value for r in records)
        await loop.done(tp, *(r.offset for r in records))

    async def on_rejected(letter):
        rejected.append(letter.offset)

    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_batch=on_batch,
                       dead_letters=MemoryProducer(log), on_rejected=on_rejected)
    await loop.run(burst=True)
    letters = [DeadLetter.model_validate_json(m.value) for m in log.read(DLQ)]
    assert [(lt.key, lt.code) for lt in letters] == [("k0", ErrorCode.MALFORMED_MESSAGE), ("k1", ErrorCode.INVALID_JSON)]
    assert "a number JSON was expected" in letters[0].error
    assert rejected == [0, 1] and good == [8]
    assert consumer.committed == {TopicPartition(TOPIC, 0): 3}


async def test_without_a_dead_letter_producer_bad_messages_are_skipped():
    log = MemoryLog()
    log.append(TOPIC, b"x")
    consumer = await started(log, TOPIC)

    async def fail(tp, records):
        raise AssertionError("nothing decodes")

    await ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_batch=fail,
                      commit=False).run(burst=True)
    assert log.read(DLQ) == [] and consumer.commits == []


class _SlowPolls:
    """A consumer whose empty polls wait their whole timeout, as a real one does on a quiet topic."""

    def __init__(self) -> None:
        self.timeouts: list[int] = []
        self._assigned = {TopicPartition(TOPIC, 0)}
        self._paused: set = set()

    def assignment(self):
        return set(self._assigned)

    def pause(self, *tps):
        self._paused.update(tps)

    def resume(self, *tps):
        self._paused.difference_update(tps)

    def paused(self):
        return set(self._paused)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.timeouts.append(timeout_ms)
        await asyncio.sleep(timeout_ms / 1000)
        return {}


async def _noop(tp, records):
    pass


async def test_a_quiet_loop_polls_long_and_a_paused_one_short():
    consumer = _SlowPolls()
    free = [1]
    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_batch=_noop,
                       capacity=lambda: free[0], poll_ms=10, quiet_poll_ms=50)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.12)
    free[0] = 0  # full: the partitions pause, and the loop must come round soon to resume them
    await asyncio.sleep(0.12)
    loop.stop()
    await asyncio.wait_for(task, 1)
    assert consumer.timeouts[0] == 50 and consumer.timeouts[-1] == 10
    assert consumer.paused()


async def test_stop_ends_a_long_poll_at_once_and_a_cancel_still_cancels():
    consumer = _SlowPolls()
    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_batch=_noop,
                       quiet_poll_ms=60_000)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    loop.stop()
    await asyncio.wait_for(task, 1)  # not a minute
    other = ConsumeLoop(_SlowPolls(), decode=decode_number, expected="number", group="g", on_batch=_noop,
                        quiet_poll_ms=60_000)
    task = asyncio.create_task(other.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class SlowCommits(MemoryConsumer):
    """Each commit waits until the test lets it through."""

    def __init__(self, log: MemoryLog, *topics: str) -> None:
        super().__init__(log, *topics)
        self.gate = asyncio.Event()
        self.in_flight = 0

    async def commit(self, offsets):
        self.in_flight += 1
        await self.gate.wait()
        self.in_flight -= 1
        await super().commit(offsets)


async def test_commit_behind_never_holds_the_loop_and_coalesces_what_was_done_meanwhile():
    log = MemoryLog()
    consumer = SlowCommits(log, TOPIC)
    await consumer.start()
    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g",
                       on_batch=lambda tp, records: asyncio.sleep(0), commit_behind=True)
    tp = TopicPartition(TOPIC, 0)
    for offset in range(5):
        loop._tracker.add(tp, offset)
    await asyncio.wait_for(loop.done(tp, 0), 1)  # returns with its commit still held at the gate
    await asyncio.sleep(0)
    assert consumer.in_flight == 1 and consumer.commits == []
    for offset in (1, 2, 3):  # done while the first commit is in flight: noted, not sent
        await asyncio.wait_for(loop.done(tp, offset), 1)
    assert consumer.in_flight == 1
    consumer.gate.set()
    await asyncio.wait_for(loop.flush(), 1)
    # one commit for the first, then one for everything noted meanwhile (the last position only)
    assert consumer.commits == [{tp: 1}, {tp: 4}]
    assert consumer.committed == {tp: 4}


async def test_commit_behind_skips_partitions_no_longer_assigned():
    log = MemoryLog({TOPIC: 2})
    consumer = await started(log, TOPIC)
    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g",
                       on_batch=lambda tp, records: asyncio.sleep(0), commit_behind=True)
    kept, lost = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    for tp in (kept, lost):
        loop._tracker.add(tp, 0)
    await loop.done(kept, 0)
    consumer.assign([kept])  # a rebalance took the other partition before its commit went out
    await loop.done(lost, 0)
    await loop.flush()
    assert consumer.committed == {kept: 1}


async def test_on_poll_gets_every_partitions_records_of_a_poll_in_one_call():
    log = MemoryLog({TOPIC: 3})
    for i in range(9):
        log.append(TOPIC, str(i).encode(), partition=i % 3)
    log.append(TOPIC, b"not a number", partition=1)
    consumer = await started(log, TOPIC)
    calls = []

    async def on_poll(records):
        calls.append([(r.tp.partition, r.value) for r in records])
        for r in records:
            await loop.done(r.tp, r.offset)

    loop = ConsumeLoop(consumer, decode=decode_number, expected="number", group="g", on_poll=on_poll,
                       dead_letters=MemoryProducer(log))
    await loop.run(burst=True)
    assert len(calls) == 1  # the double's poll brings everything at once: one call, not one per partition
    got = calls[0]
    assert sorted(v for _, v in got) == list(range(9))
    for p in range(3):  # in order within each partition
        assert [v for q, v in got if q == p] == [p, p + 3, p + 6]
    assert len(log.read(DLQ)) == 1
    assert consumer.committed == {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 4,
                                  TopicPartition(TOPIC, 2): 3}


def test_a_loop_takes_exactly_one_of_on_batch_and_on_poll():
    for given in ({}, {"on_batch": lambda tp, r: None, "on_poll": lambda r: None}):
        with pytest.raises(ValueError, match="one of on_batch and on_poll"):
            ConsumeLoop(object(), decode=decode_number, expected="number", group="g", **given)
