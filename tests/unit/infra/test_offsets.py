from infra.kafka.offsets import OffsetTracker


def test_commit_waits_for_the_oldest_unfinished_job():
    t = OffsetTracker()
    for offset in (10, 11, 12):
        t.add("p0", offset)
    assert t.done("p0", 12) == 10  # 10 still running: commit position stays at 10
    assert t.done("p0", 11) is None
    assert t.done("p0", 10) == 13
    assert t.in_flight() == 0


def test_partitions_are_independent_and_forget_drops_state():
    t = OffsetTracker()
    t.add("a", 0)
    t.add("b", 7)
    assert t.done("b", 7) == 8
    assert t.in_flight("a") == 1
    t.forget("a")
    assert t.done("a", 0) is None and t.in_flight() == 0


def test_unknown_offsets_are_ignored():
    t = OffsetTracker()
    t.add("p", 3)
    assert t.done("p", 99) is None
    assert t.done("p", 3) == 4


def test_a_poll_done_in_order_moves_the_position_each_time_and_in_reverse_only_at_the_end():
    t = OffsetTracker()
    for offset in range(100, 1100):
        t.add("p", offset)
    assert [t.done("p", offset) for offset in range(100, 105)] == [101, 102, 103, 104, 105]
    t2 = OffsetTracker()
    for offset in range(1000):
        t2.add("p", offset)
    moved = [t2.done("p", offset) for offset in reversed(range(1000))]
    assert moved[:-1] == [0] + [None] * 998  # the oldest stays pending: the position holds at 0
    assert moved[-1] == 1000 and t2.in_flight() == 0


def test_an_offset_added_out_of_order_after_a_seek_back_holds_the_position():
    t = OffsetTracker()
    for offset in (10, 11):
        t.add("p", offset)
    t.add("p", 5)  # read again after a seek back
    assert t.done("p", 10) == 5
    assert t.done("p", 5) == 11
    t.add("p", 12)
    assert t.done("p", 11) == 12
    assert t.done("p", 12) == 13
