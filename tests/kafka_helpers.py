"""Reading and writing the real broker from tests."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import TopicPartition

from infra.kafka import clients
from infra.kafka.codec import decode_event
from schemas.events import TERMINAL_TYPES


async def started_producer(bootstrap: str):
    producer = clients.producer(bootstrap)
    await clients.start_client(producer, bootstrap)
    return producer


async def wait_until(condition, *, timeout: float = 5.0) -> None:
    """Yield to the loop until `condition()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def tail(bootstrap: str, topic: str):
    """A reader of what `topic` receives from now on (no group), positioned at its end before the block
    runs; `await reader(until, timeout)` returns what came since, once `until(messages)` holds. Started
    before the action it watches, it sees that action's records within a poll, however long the topic
    already is (a read from the beginning can take longer than a short job runs)."""
    consumer = clients.consumer(bootstrap, topic, group_id=None, auto_offset_reset="latest")
    await clients.start_client(consumer, bootstrap)
    try:
        await wait_until(lambda: bool(consumer.assignment()), timeout=30)
        for tp in consumer.assignment():
            await consumer.position(tp)  # "latest" resolved now, before the watched action
        seen: list = []

        async def read(until, timeout: float = 60.0) -> list:
            return await _read_until(consumer, topic, seen, until, timeout)

        yield read
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, *, until, timeout: float = 60.0) -> list:
    """Read `topic` from the beginning (no group) until `until(messages)` is true."""
    consumer = clients.consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    try:
        return await _read_until(consumer, topic, [], until, timeout)
    finally:
        await consumer.stop()


async def _read_until(consumer, topic: str, seen: list, until, timeout: float) -> list:
    """Poll `consumer` into `seen` until `until(seen)` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not until(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s reading {topic}: {len(seen)} messages seen")
        for messages in (await consumer.getmany(timeout_ms=100)).values():
            seen.extend(messages)
    return seen


async def job_events(bootstrap: str, topic: str, job_id: str, *, timeout: float = 60.0,
                     after_commit: tuple[str, object] | None = None) -> list:
    """The events of one job on `topic`, read until its first terminal event.

    With `after_commit=(group, record)` (`record` the RecordMetadata of the message the job came
    from), first wait until `group` has committed past `record`: its consumer commits only after
    every event it produced for that message is acknowledged, so the log then holds all of them,
    late ones after the terminal included. The topic is then read to the end offsets it had at that
    moment, not just to the terminal, so that nothing written after the terminal is missed.
    """
    key = job_id.encode()

    def events_of(messages):
        return [decode_event(m.value) for m in messages if m.key == key]

    def done(messages):
        return any(e.type in TERMINAL_TYPES for e in events_of(messages))

    if after_commit is None:
        return events_of(await read_topic(bootstrap, topic, until=done, timeout=timeout))
    group, record = after_commit
    await wait_committed(bootstrap, group, record, timeout=timeout)
    consumer = clients.consumer(bootstrap, topic, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    seen: list = []
    deadline = time.monotonic() + timeout
    try:
        while not consumer.assignment():
            for messages in (await consumer.getmany(timeout_ms=100)).values():  # a group-less consumer
                seen.extend(messages)                                             # gets every partition
            if time.monotonic() > deadline:
                raise AssertionError(f"no partitions of {topic} assigned within {timeout}s")
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                seen.extend(messages)
            positions = {tp: await consumer.position(tp) for tp in ends}
            if done(seen) and all(positions[tp] >= end for tp, end in ends.items()):
                return events_of(seen)
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s reading {topic} for {job_id}: "
                                     f"{len(events_of(seen))} events seen, positions {positions}, ends {ends}")
    finally:
        await consumer.stop()


async def skip_backlog(bootstrap: str, topic: str, group: str) -> int:
    """Commit `group` past everything on `topic` now (jobs other tests left for nobody to run).

    The bundled broker's end offsets are unreliable, so the backlog is read to its end instead.
    """
    from tests.conftest import FAST_GROUP

    consumer = clients.consumer(bootstrap, topic, group_id=group, **FAST_GROUP)
    await clients.start_client(consumer, bootstrap)
    skipped, idle = 0, 0
    try:
        while idle < 5:
            batches = await consumer.getmany(timeout_ms=200)
            count = sum(len(m) for m in batches.values())
            skipped += count
            idle = 0 if count or not consumer.assignment() else idle + 1
        await consumer.commit()
    finally:
        await consumer.stop()
    return skipped


async def wait_committed(bootstrap: str, group: str, record, *, timeout: float = 60.0) -> None:
    """Wait until `group` has committed past `record` (the RecordMetadata of a sent message): its
    consumer has finished with it, every output acknowledged."""
    tp = TopicPartition(record.topic, record.partition)
    consumer = clients.consumer(bootstrap, group_id=group)  # never subscribes: only reads the group's offsets
    await clients.start_client(consumer, bootstrap)
    deadline = time.monotonic() + timeout
    try:
        while (await consumer.committed(tp) or 0) <= record.offset:
            if time.monotonic() > deadline:
                raise AssertionError(f"{group} did not commit past {tp}@{record.offset} within {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def serving(*services):
    """Start runners (JobRunner, GateRunner) one at a time, run them, and stop them in reverse."""
    started, tasks = [], []
    try:
        for service in services:  # one at a time: model builds in parallel threads race in torch
            await service.start()
            started.append(service)
            tasks.append(asyncio.create_task(service.run()))
        yield services
    finally:
        for service in reversed(started):
            await service.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
