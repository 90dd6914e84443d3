"""`FairQueue`: which queued job a worker starts next, fair across tenants.

Jobs wait in one queue per tenant. Free slots go to tenants by weighted round robin, done as
stride scheduling: each tenant has a pass that advances by 1/weight per job it starts, and the
tenant with the lowest pass goes next (ties: the tenant that became active first). A tenant that
becomes active starts at the pass of the job started last, so it is served within one round: it
neither jumps ahead of the others nor waits behind another tenant's backlog. Within a tenant,
the most urgent `priority` (0) goes first, then arrival order. Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Mapping
from fractions import Fraction
from itertools import count
from typing import Generic, TypeVar

T = TypeVar("T")

#: inactive tenants' passes kept beyond this many are pruned once behind the current pass
_KEEP_INACTIVE = 1024


class FairQueue(Generic[T]):
    """Per-tenant queues; `pop` takes the next item by weighted round robin across tenants."""

    def __init__(self, weights: Mapping[Hashable, int] | None = None, default_weight: int = 1) -> None:
        if default_weight < 1 or any(w < 1 for w in (weights or {}).values()):
            raise ValueError("tenant weights must be >= 1")
        self._weights = dict(weights or {})
        self._default_weight = default_weight
        self._queues: dict[Hashable, list[tuple[int, int, T]]] = {}
        self._pass: dict[Hashable, Fraction] = {}  #: active tenants' passes
        self._since: dict[Hashable, int] = {}  #: when each active tenant became active (tie-break)
        self._inactive: dict[Hashable, Fraction] = {}  #: passes of tenants whose queue emptied
        self._now = Fraction(0)  #: the pass of the job started last
        self._seq = count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def weight(self, tenant: Hashable) -> int:
        return self._weights.get(tenant, self._default_weight)

    def push(self, tenant: Hashable, priority: int, item: T) -> None:
        """Queue `item` for `tenant`; a lower `priority` value is more urgent (0 first)."""
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = []
            self._pass[tenant] = max(self._inactive.pop(tenant, self._now), self._now)
            self._since[tenant] = next(self._seq)
        heapq.heappush(queue, (priority, next(self._seq), item))
        self._size += 1

    def pop(self) -> T | None:
        """The next item to start, or None when nothing is queued."""
        if not self._queues:
            return None
        tenant = min(self._queues, key=lambda t: (self._pass[t], self._since[t]))
        queue = self._queues[tenant]
        _, _, item = heapq.heappop(queue)
        self._size -= 1
        self._now = self._pass[tenant]
        self._pass[tenant] += Fraction(1, self.weight(tenant))
        if not queue:
            self._deactivate(tenant)
        return item

    def remove(self, pred: Callable[[T], bool]) -> list[T]:
        """Drop the queued items matching `pred` (cancelled jobs, revoked partitions); returns them."""
        removed: list[T] = []
        for tenant in list(self._queues):
            queue = self._queues[tenant]
            keep, gone = [], []
            for entry in sorted(queue):
                (gone if pred(entry[2]) else keep).append(entry)
            if not gone:
                continue
            removed.extend(entry[2] for entry in gone)
            heapq.heapify(keep)
            self._queues[tenant] = keep
            if not keep:
                self._deactivate(tenant)
        self._size -= len(removed)
        return removed

    def _deactivate(self, tenant: Hashable) -> None:
        del self._queues[tenant], self._since[tenant]
        self._inactive[tenant] = self._pass.pop(tenant)
        if len(self._inactive) > _KEEP_INACTIVE:  # a tenant behind the current pass starts there anyway
            self._inactive = {t: p for t, p in self._inactive.items() if p > self._now}
