"""A pure bucket batcher: group compatible items by key, flush on size or age.

The clock is injected: every call takes ``now`` (seconds, any monotonic origin), so the
logic is tested with plain floats and the runner passes ``time.monotonic()``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class _Bucket(Generic[T]):
    first_at: float  #: arrival time of the oldest item still queued
    items: list[T] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


class BucketBatcher(Generic[K, T]):
    """Queues items per key; a bucket is ready when full or when its oldest item is due.

    A bucket larger than ``max_batch_size`` flushes in chunks of ``max_batch_size``, oldest
    first. Buckets come out in order of their oldest item so that no key starves another.
    """

    def __init__(self, max_batch_size: int, max_wait_s: float) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._buckets: dict[K, _Bucket[T]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: K, item: T, now: float) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(first_at=now)
        bucket.items.append(item)
        bucket.times.append(now)
        self._size += 1

    def pop_ready(self, now: float) -> list[tuple[K, list[T]]]:
        """Remove and return every batch that is full or due at ``now``, oldest bucket first."""
        ready: list[tuple[K, list[T]]] = []
        for key in sorted(self._buckets, key=lambda k: self._buckets[k].first_at):
            bucket = self._buckets[key]
            while bucket.items and (
                len(bucket.items) >= self._max_batch_size
                or now >= bucket.first_at + self._max_wait_s  # same sum as next_deadline()
            ):
                n = self._max_batch_size
                batch = bucket.items[:n]
                ready.append((key, batch))
                del bucket.items[:n]
                del bucket.times[:n]
                self._size -= len(batch)
                if bucket.times:
                    bucket.first_at = bucket.times[0]
            if not bucket.items:
                del self._buckets[key]
        return ready

    def next_deadline(self) -> float | None:
        """The earliest time at which some bucket becomes due by age; None when empty."""
        if not self._buckets:
            return None
        return min(b.first_at for b in self._buckets.values()) + self._max_wait_s

    def remove(self, pred: Callable[[T], bool]) -> list[T]:
        """Drop queued items matching ``pred`` (cancelled jobs); returns what was dropped."""
        removed: list[T] = []
        for key in list(self._buckets):
            bucket = self._buckets[key]
            keep: list[tuple[float, T]] = []
            for t, it in zip(bucket.times, bucket.items):
                if pred(it):
                    removed.append(it)
                else:
                    keep.append((t, it))
            if len(keep) == len(bucket.items):
                continue
            if not keep:
                del self._buckets[key]
                continue
            bucket.times = [t for t, _ in keep]
            bucket.items = [it for _, it in keep]
            bucket.first_at = bucket.times[0]
        self._size -= len(removed)
        return removed
