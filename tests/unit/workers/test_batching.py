from __future__ import annotations

import pytest

from workers.batching import BucketBatcher


def test_full_bucket_flushes_at_once_and_others_wait() -> None:
    b: BucketBatcher[str, int] = BucketBatcher(max_batch_size=3, max_wait_s=1.0)
    for i in range(3):
        b.add("64x64", i, now=0.0)
    b.add("32x32", 9, now=0.0)
    assert b.pop_ready(now=0.1) == [("64x64", [0, 1, 2])]
    assert len(b) == 1


def test_bucket_flushes_when_oldest_item_is_due() -> None:
    b: BucketBatcher[str, int] = BucketBatcher(max_batch_size=8, max_wait_s=0.5)
    b.add("k", 1, now=10.0)
    b.add("k", 2, now=10.3)
    assert b.next_deadline() == pytest.approx(10.5)
    assert b.pop_ready(now=10.49) == []
    assert b.pop_ready(now=10.5) == [("k", [1, 2])]
    assert len(b) == 0 and b.next_deadline() is None


def test_oversized_bucket_flushes_in_chunks_and_keeps_the_rest_with_its_own_age() -> None:
    b: BucketBatcher[str, int] = BucketBatcher(max_batch_size=2, max_wait_s=1.0)
    for i, t in enumerate([0.0, 0.1, 0.2, 0.7, 0.8]):
        b.add("k", i, now=t)
    assert b.pop_ready(now=0.8) == [("k", [0, 1]), ("k", [2, 3])]
    assert b.next_deadline() == pytest.approx(1.8)  # item 4 arrived at 0.8
    assert b.pop_ready(now=1.79) == []
    assert b.pop_ready(now=1.8) == [("k", [4])]


def test_ready_buckets_come_out_oldest_first() -> None:
    b: BucketBatcher[str, str] = BucketBatcher(max_batch_size=4, max_wait_s=1.0)
    b.add("late", "x", now=0.5)
    b.add("early", "y", now=0.0)
    assert [k for k, _ in b.pop_ready(now=2.0)] == ["early", "late"]


def test_remove_drops_cancelled_items_and_resets_deadline() -> None:
    b: BucketBatcher[str, str] = BucketBatcher(max_batch_size=4, max_wait_s=1.0)
    b.add("k", "cancel-me", now=0.0)
    b.add("k", "keep", now=0.4)
    b.add("j", "cancel-too", now=0.1)
    assert sorted(b.remove(lambda item: item.startswith("cancel"))) == ["cancel-me", "cancel-too"]
    assert len(b) == 1
    assert b.next_deadline() == pytest.approx(1.4)
    assert b.remove(lambda item: False) == []
    assert b.pop_ready(now=1.4) == [("k", ["keep"])]


def test_zero_wait_flushes_every_add_immediately() -> None:
    b: BucketBatcher[int, int] = BucketBatcher(max_batch_size=4, max_wait_s=0.0)
    b.add(1, 1, now=5.0)
    assert b.pop_ready(now=5.0) == [(1, [1])]


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        BucketBatcher(max_batch_size=0, max_wait_s=1.0)
    with pytest.raises(ValueError):
        BucketBatcher(max_batch_size=1, max_wait_s=-1.0)
