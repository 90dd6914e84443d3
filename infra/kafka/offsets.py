"""Which offsets a worker may commit when jobs of one partition finish out of order.

A partition's committed offset only moves past a job once that job and every earlier one has
ended, so a worker that dies never loses an unfinished job (its successor re-reads it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class OffsetTracker:
    """Per partition: offsets in flight, and the next offset safe to commit."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, set[int]] = {}
        #: per partition, the offsets added, in increasing order, from the oldest that may still be pending:
        #: its front is the commit position, without a scan of the pending set on every `done` (a poll of n
        #: messages done at once cost n scans of up to n offsets; a sixth of a tap's CPU per message)
        self._order: dict[Hashable, deque[int]] = {}
        self._highest: dict[Hashable, int] = {}
        self._committed: dict[Hashable, int] = {}

    def add(self, partition: Hashable, offset: int) -> None:
        """Record a message handed to a job (offsets arrive in increasing order per partition; one that
        does not, after a seek back, is placed in order)."""
        pending = self._pending.setdefault(partition, set())
        pending.add(offset)
        order = self._order.get(partition)
        if order is None:
            self._order[partition] = deque((offset,))
        elif not order or offset > order[-1]:
            order.append(offset)
        else:
            self._order[partition] = deque(sorted(pending))
        self._highest[partition] = max(offset, self._highest.get(partition, -1))

    def done(self, partition: Hashable, offset: int) -> int | None:
        """Mark an offset finished; return the new commit position if it moved."""
        pending = self._pending.get(partition)
        if pending is None or offset not in pending:
            return None
        pending.discard(offset)
        order = self._order[partition]
        while order and order[0] not in pending:  # each offset leaves the front once
            order.popleft()
        position = order[0] if order else self._highest[partition] + 1
        if position == self._committed.get(partition):
            return None
        self._committed[partition] = position
        return position

    def forget(self, partition: Hashable) -> None:
        """Drop a partition's state (after it was revoked)."""
        for table in (self._pending, self._order, self._highest, self._committed):
            table.pop(partition, None)

    def in_flight(self, partition: Hashable | None = None) -> int:
        if partition is not None:
            return len(self._pending.get(partition, ()))
        return sum(len(p) for p in self._pending.values())
