"""The pacer behind idle consumers: at once while busy, a ring wakes an idle wait, a lost ring is bounded."""

import asyncio

from infra.kafka.doorbell import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_busy_fetches_go_out_at_once():
    clock = Clock()
    pacer = Pacer(idle_s=3600, busy_s=2.0, clock=clock)
    clock.now = 1.0  # within busy_s of the start
    await asyncio.wait_for(pacer.wait(["t"]), 5)
    clock.now = 10.0
    pacer.saw_data()  # data keeps it busy
    clock.now = 11.0
    assert not pacer.idle
    await asyncio.wait_for(pacer.wait(["t"]), 5)


async def test_idle_wait_parks_until_its_topic_rings():
    clock = Clock()
    pacer = Pacer(idle_s=3600, busy_s=2.0, clock=clock)
    clock.now = 5.0
    assert pacer.idle
    waiting = asyncio.create_task(pacer.wait(["jobs", "control"]))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # backed off
    pacer.mark(["jobs", "control"])  # the topics this process fetches
    pacer.ring("other")  # another process's topic: it stays parked, and idle
    await asyncio.sleep(0.05)
    assert not waiting.done() and pacer.idle
    pacer.ring("control")
    await asyncio.wait_for(waiting, 5)
    assert not pacer.idle  # a ring makes the process busy: the next fetches go out at once
    await asyncio.wait_for(pacer.wait(["jobs"]), 5)


async def test_a_ring_between_two_fetches_is_not_lost():
    clock = Clock()
    pacer = Pacer(idle_s=3600, busy_s=0.0, clock=clock)
    mark = pacer.mark(["jobs"])  # a fetch goes out
    pacer.ring("jobs")  # work arrives while it is in flight
    clock.now = 100.0  # and the process has gone idle again by the time the next fetch is due
    await asyncio.wait_for(pacer.wait(["jobs"], since=mark), 5)


async def test_a_lost_ring_costs_at_most_the_idle_wait():
    pacer = Pacer(idle_s=0.05, busy_s=0.0)
    await asyncio.wait_for(pacer.wait(["jobs"]), 5)  # no ring ever comes: the idle wait ends it


async def test_zero_idle_wait_never_parks():
    pacer = Pacer(idle_s=0, busy_s=0.0)
    assert not pacer.idle
    await asyncio.wait_for(pacer.wait(["jobs"]), 5)


async def test_a_ring_from_another_thread_wakes_the_waiting_loop():
    import threading

    pacer = Pacer(idle_s=3600, busy_s=0.0)
    waiting = asyncio.create_task(pacer.wait(["jobs"]))
    await asyncio.sleep(0.05)
    threading.Thread(target=pacer.ring, args=("jobs",)).start()
    await asyncio.wait_for(waiting, 5)


async def test_fetches_naming_different_topics_each_time_still_park_when_idle():
    # a consumer's fetches to one node alternate between topic sets as partitions are paused and
    # resumed (faust does): each topic is compared with its own last fetch, so an idle process does
    # not go back to fetching back to back once some topic has ever rung
    clock = Clock()
    pacer = Pacer(idle_s=3600, busy_s=2.0, clock=clock)
    pacer.ring("events")  # work came once, long ago
    marks: dict[str, int] = {}
    marks.update(pacer.mark(["events", "requests"]))
    marks.update(pacer.mark(["requests"]))
    clock.now = 100.0
    for topics in (["requests"], ["events", "requests"], ["events"]):
        waiting = asyncio.create_task(pacer.wait(topics, since=marks))
        await asyncio.sleep(0.02)
        assert not waiting.done(), topics
        waiting.cancel()
    first = asyncio.create_task(pacer.wait(["memory"], since=marks))  # a topic not fetched before
    await asyncio.wait_for(first, 5)
    pacer.ring("events")
    await asyncio.wait_for(pacer.wait(["requests", "events"], since=marks), 5)


async def test_with_a_busy_poll_a_busy_fetch_after_an_empty_one_waits_for_a_ring():
    clock = Clock()
    pacer = Pacer(idle_s=3600, busy_s=2.0, busy_poll_s=3600, clock=clock)
    pacer.saw_data()
    assert not pacer.idle
    mark = pacer.mark(["events"])
    waiting = asyncio.create_task(pacer.wait(["events"], since=mark))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # busy, yet parked: no fetch goes out until work rings
    pacer.ring("events")
    await asyncio.wait_for(waiting, 5)


async def test_a_busy_poll_bounds_the_wait_when_no_ring_comes():
    # a producer that does not ring (or a lost ring) costs at most busy_poll_s while busy
    pacer = Pacer(idle_s=3600, busy_s=3600, busy_poll_s=0.05)
    assert not pacer.idle
    await asyncio.wait_for(pacer.wait(["events"], since=pacer.mark(["events"])), 5)  # idle_s would not end it


async def test_while_every_topic_is_heard_a_busy_fetch_waits_for_a_ring_past_the_busy_poll():
    pacer = Pacer(idle_s=3600, busy_s=3600, busy_poll_s=0.05)
    assert not pacer.idle and not pacer.hearing
    mark = pacer.mark(["events"])
    pacer.heard(1)  # the listener's subscription to the one topic fetched here is confirmed
    assert pacer.hearing
    waiting = asyncio.create_task(pacer.wait(["events"], since=mark))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # no poll every 50 ms: a ring will come
    pacer.ring("events")
    await asyncio.wait_for(waiting, 5)


async def test_a_topic_not_heard_yet_or_a_lost_listener_brings_the_busy_poll_back():
    pacer = Pacer(idle_s=3600, busy_s=3600, busy_poll_s=0.05)
    pacer.heard(len(pacer.mark(["events"])))
    assert pacer.hearing
    await asyncio.wait_for(pacer.wait(["jobs"]), 5)  # a second topic, not subscribed yet: the busy poll ends it
    assert not pacer.hearing
    pacer.heard(2)
    assert pacer.hearing
    pacer.heard(None)  # the listener's connection dropped
    await asyncio.wait_for(pacer.wait(["events"], since=pacer.mark(["events"])), 5)


async def test_with_busy_poll_zero_a_busy_fetch_goes_out_at_once_even_when_heard():
    pacer = Pacer(idle_s=3600, busy_s=3600, busy_poll_s=0.0)
    pacer.heard(len(pacer.mark(["events"])))
    await asyncio.wait_for(pacer.wait(["events"], since=pacer.mark(["events"])), 1)


async def test_while_every_topic_is_heard_an_idle_fetch_waits_the_heard_bound_not_the_idle_poll():
    # every genloom record rings: an idle consumer need not fetch once per idle_s to find one
    pacer = Pacer(idle_s=0.05, busy_s=0.0, busy_poll_s=0.05, heard_s=3600)
    mark = pacer.mark(["jobs"])
    pacer.heard(1)
    waiting = asyncio.create_task(pacer.wait(["jobs"], since=mark))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # past idle_s and busy_poll_s: parked until a ring
    pacer.ring("jobs")
    await asyncio.wait_for(waiting, 5)


async def test_a_lost_ring_while_heard_costs_at_most_the_heard_bound():
    pacer = Pacer(idle_s=3600, busy_s=0.0, busy_poll_s=3600, heard_s=0.05)
    pacer.heard(len(pacer.mark(["jobs"])))
    await asyncio.wait_for(pacer.wait(["jobs"], since=pacer.mark(["jobs"])), 5)  # no ring: heard_s ends it


async def test_when_the_listener_drops_an_idle_fetch_falls_back_to_the_idle_poll():
    pacer = Pacer(idle_s=0.05, busy_s=0.0, busy_poll_s=0.05, heard_s=3600)
    pacer.heard(len(pacer.mark(["jobs"])))
    pacer.heard(None)  # Redis reconnecting: a ring may be missed, so the shorter bound applies
    await asyncio.wait_for(pacer.wait(["jobs"], since=pacer.mark(["jobs"])), 5)


def test_the_heard_bound_defaults_to_the_idle_poll():
    assert Pacer(idle_s=0.7).heard_s == 0.7


def test_while_rings_pace_a_fetch_asks_the_broker_for_the_short_wait_only():
    clock = Clock()
    pacer = Pacer(idle_s=3600, busy_s=2.0, busy_poll_s=0.05, clock=clock, rung_wait_ms=1)
    assert pacer.fetch_wait_ms(10) == 10  # no listener hears yet: a ring may be missed, the broker holds
    pacer.heard(len(pacer.mark(["jobs"])))
    assert pacer.rings_pace() and pacer.fetch_wait_ms(10) == 1  # busy, polling: an empty answer waits for a ring
    assert pacer.fetch_wait_ms(1) == 1  # a shorter configured wait is kept
    clock.now = 100.0
    assert pacer.idle and pacer.fetch_wait_ms(10) == 1  # idle: the same
    pacer.mark(["control"])  # a topic the listener has not subscribed yet: the broker holds again
    assert not pacer.rings_pace() and pacer.fetch_wait_ms(10) == 10


def test_busy_fetches_without_a_busy_poll_keep_the_brokers_wait():
    # busy_poll 0 fetches back to back while busy: the broker's hold is all that spaces them
    pacer = Pacer(idle_s=3600, busy_s=3600, busy_poll_s=0.0, rung_wait_ms=1)
    pacer.heard(len(pacer.mark(["events"])))
    assert not pacer.rings_pace() and pacer.fetch_wait_ms(10) == 10


def test_a_zero_rung_wait_keeps_the_consumers_own():
    pacer = Pacer(idle_s=3600, busy_s=0.0, busy_poll_s=0.05)
    pacer.heard(len(pacer.mark(["jobs"])))
    assert pacer.rings_pace() and pacer.fetch_wait_ms(10) == 10
