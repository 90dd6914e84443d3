"""The preparation agent waits for its batch's acknowledgements (and the rings they start) before the
stages' after-work: `streams.prepare.agents.delivered`."""

from __future__ import annotations

import asyncio

from streams.prepare.agents import delivered


def ringing(future: asyncio.Future, heard: list[str], topic: str) -> None:
    """What `infra.kafka.doorbell.ring_after` does on an acknowledgement: a callback that starts a task,
    which yields once before it publishes (as `Doorbell._publish` does)."""

    async def publish() -> None:
        await asyncio.sleep(0)
        heard.append(topic)

    future.add_done_callback(lambda f: asyncio.get_running_loop().create_task(publish()))


async def test_returns_once_every_delivery_is_acknowledged_and_its_ring_is_out():
    loop = asyncio.get_running_loop()
    deliveries = [loop.create_future() for _ in range(3)]
    heard: list[str] = []
    for i, future in enumerate(deliveries):
        ringing(future, heard, f"genloom.jobs.{i}")
        loop.call_later(0.01 * (i + 1), future.set_result, i)
    await delivered(deliveries)  # awaited in this task: a wrapper's extra turn of the loop would hide a late ring
    assert all(f.done() for f in deliveries)
    assert sorted(heard) == ["genloom.jobs.0", "genloom.jobs.1", "genloom.jobs.2"]


async def test_a_delivery_that_never_ends_holds_the_after_work_only_until_the_timeout():
    loop = asyncio.get_running_loop()
    hung, acked = loop.create_future(), loop.create_future()
    acked.set_result(None)
    await asyncio.wait_for(delivered([acked, hung], timeout_s=0.05), 5)
    assert not hung.done()  # left to the producer, not cancelled here
    hung.cancel()


async def test_a_failed_delivery_does_not_raise_here():
    loop = asyncio.get_running_loop()
    failed = loop.create_future()
    failed.set_exception(ConnectionError("broker gone"))
    await asyncio.wait_for(delivered([failed]), 5)
    assert isinstance(failed.exception(), ConnectionError)


async def test_nothing_sent_waits_for_nothing():
    await asyncio.wait_for(delivered([]), 1)
