"""`FairQueue`: the order in which a worker starts queued jobs, for given queues, weights, priorities."""

from __future__ import annotations

import pytest

from workers.scheduling import FairQueue


def drain(queue: FairQueue) -> list:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_one_tenants_backlog_does_not_delay_another_tenants_job():
    queue: FairQueue[str] = FairQueue()
    for i in range(50):
        queue.push("a", 5, f"a{i}")
    queue.push("b", 5, "b0")
    order = drain(queue)
    assert order[:3] == ["a0", "b0", "a1"]
    assert order == ["a0", "b0"] + [f"a{i}" for i in range(1, 50)]


def test_tenants_alternate_in_order_of_arrival():
    queue: FairQueue[str] = FairQueue()
    for t in "abc":
        for i in range(2):
            queue.push(t, 5, f"{t}{i}")
    assert drain(queue) == ["a0", "b0", "c0", "a1", "b1", "c1"]


def test_weights_share_the_slots():
    queue: FairQueue[str] = FairQueue({"big": 3})
    for i in range(6):
        queue.push("big", 5, f"B{i}")
        queue.push("small", 5, f"s{i}")
    order = drain(queue)
    assert order[:8] == ["B0", "s0", "B1", "B2", "B3", "s1", "B4", "B5"]
    assert order[8:] == ["s2", "s3", "s4", "s5"]


def test_priority_orders_a_tenants_jobs_zero_first_then_arrival():
    queue: FairQueue[str] = FairQueue()
    queue.push("a", 5, "normal-1")
    queue.push("a", 9, "lazy")
    queue.push("a", 0, "urgent")
    queue.push("a", 5, "normal-2")
    assert drain(queue) == ["urgent", "normal-1", "normal-2", "lazy"]


def test_priority_does_not_jump_another_tenants_turn():
    queue: FairQueue[str] = FairQueue()
    queue.push("a", 9, "a-lazy")
    queue.push("b", 0, "b-urgent-1")
    queue.push("b", 0, "b-urgent-2")
    assert drain(queue) == ["a-lazy", "b-urgent-1", "b-urgent-2"]


def test_a_tenant_arriving_late_is_served_next_not_after_the_backlog():
    queue: FairQueue[str] = FairQueue()
    for i in range(10):
        queue.push("a", 5, f"a{i}")
    assert [queue.pop() for _ in range(4)] == ["a0", "a1", "a2", "a3"]
    queue.push("b", 5, "b0")
    assert [queue.pop() for _ in range(2)] == ["b0", "a4"]


def test_a_tenant_that_just_ran_does_not_jump_ahead_when_it_returns():
    queue: FairQueue[str] = FairQueue()
    queue.push("a", 5, "a0")
    queue.push("b", 5, "b0")
    queue.push("b", 5, "b1")
    assert queue.pop() == "a0"  # a's queue empties; its turn was used
    queue.push("a", 5, "a1")
    assert drain(queue) == ["b0", "b1", "a1"]  # at equal turns, the tenant waiting longer goes first


def test_remove_drops_matching_items_and_keeps_the_order_of_the_rest():
    queue: FairQueue[str] = FairQueue()
    for i in range(3):
        queue.push("a", 5, f"a{i}")
    queue.push("b", 5, "b0")
    assert queue.remove(lambda item: item in {"a1", "b0"}) == ["a1", "b0"]
    assert len(queue) == 2
    assert drain(queue) == ["a0", "a2"]
    assert queue.pop() is None and len(queue) == 0


def test_weights_below_one_are_refused():
    with pytest.raises(ValueError):
        FairQueue({"a": 0})
