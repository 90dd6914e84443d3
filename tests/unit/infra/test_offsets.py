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
