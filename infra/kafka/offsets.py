"""Which offsets a worker may commit when jobs of one partition finish out of order.

A partition's committed offset only moves past a job once that job and every earlier one has
ended, so a worker that dies never loses an unfinished job (its successor re-reads it).
"""

from __future__ import annotations

from collections.abc import Hashable


class OffsetTracker:
    """Per partition: offsets in flight, and the next offset safe to commit."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, set[int]] = {}
        self._highest: dict[Hashable, int] = {}
        self._committed: dict[Hashable, int] = {}

    def add(self, partition: Hashable, offset: int) -> None:
        """Record a message handed to a job (offsets arrive in increasing order per partition)."""
        self._pending.setdefault(partition, set()).add(offset)
        self._highest[partition] = max(offset, self._highest.get(partition, -1))

    def done(self, partition: Hashable, offset: int) -> int | None:
        """Mark an offset finished; return the new commit position if it moved."""
        pending = self._pending.get(partition)
        if pending is None or offset not in pending:
            return None
        pending.discard(offset)
        position = min(pending) if pending else self._highest[partition] + 1
        if position == self._committed.get(partition):
            return None
        self._committed[partition] = position
        return position

    def forget(self, partition: Hashable) -> None:
        """Drop a partition's state (after it was revoked)."""
        for table in (self._pending, self._highest, self._committed):
            table.pop(partition, None)

    def in_flight(self, partition: Hashable | None = None) -> int:
        if partition is not None:
            return len(self._pending.get(partition, ()))
        return sum(len(p) for p in self._pending.values())
