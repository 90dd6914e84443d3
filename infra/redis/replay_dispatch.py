"""Which follower gets which replay entry: the shared reader's bookkeeping, without I/O.

A `Follower` is one stream's view of one job's replay log: a cursor (the last entry number handed
over), a bounded queue of entries not yet taken, and `behind`, set when it may have missed entries
(it just started, its queue was full when one was pushed, or a pushed entry was not the next one).
A follower that is behind takes no pushed entries; its stream reads the log from its cursor
(`offer`) until it has caught up, then takes pushes again. `missed` counts the pushes it let go, so a
read of the log that raced a push can tell whether it saw everything.

The `Dispatcher` holds every follower of the process by log key and hands a pushed entry to the
followers of its log (`push`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

#: a raw entry: (stream id, fields), as XRANGE gives it
RawEntry = tuple[bytes, dict[bytes, bytes]]


def entry_number(stream_id: bytes) -> int:
    return int(stream_id.split(b"-", 1)[0])


def push_payload(number: int, etype: bytes, data: bytes) -> bytes:
    """What the fan-out publishes for entry `number` (the Lua in jobstore builds the same bytes)."""
    return b"%d %s %s" % (number, etype, data)


def parse_push(payload: bytes) -> tuple[int, RawEntry]:
    """A pushed entry as its number and the raw entry XRANGE would give; ValueError when malformed."""
    number, etype, data = payload.split(b" ", 2)
    n = int(number)
    return n, (b"%d-0" % n, {b"type": etype, b"data": data})


class Follower:
    """One stream's entries of one log after its cursor, in order, at most `capacity` waiting."""

    def __init__(self, key: bytes, cursor: int, capacity: int) -> None:
        self.key = key
        self.cursor = cursor
        self.capacity = capacity
        self.queue: deque[RawEntry] = deque()
        self.behind = True  # its backlog after `cursor` is read from the log first
        self.missed = 0
        self.reset = False

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.capacity

    @property
    def room(self) -> int:
        return self.capacity - len(self.queue)

    def push(self, number: int, raw: RawEntry) -> bool:
        """A live entry; True when taken. One it cannot take in order marks it behind."""
        if self.reset or number <= self.cursor:
            return False  # handed over already (a read of the log overlapped the push)
        if self.behind or number != self.cursor + 1 or self.full:
            self.behind = True
            self.missed += 1
            return False
        self.queue.append(raw)
        self.cursor = number
        return True

    def offer(self, entries: Iterable[RawEntry]) -> int:
        """Entries read from the log, oldest first: those after the cursor, as many as there is room
        for (a gap, where the log was trimmed, is handed over for the stream to report); how many."""
        if self.reset:
            return 0
        taken = 0
        for stream_id, fields in entries:
            number = entry_number(stream_id)
            if number <= self.cursor:
                continue
            if self.full:
                break
            self.queue.append((stream_id, fields))
            self.cursor = number
            taken += 1
        return taken

    def caught_up(self, read: int, asked: int, missed_before: int) -> None:
        """After a read of the log that gave `read` of `asked` entries: behind no more when it reached the
        end and no push went past meanwhile (a later entry then comes as a push)."""
        if read < asked and self.missed == missed_before and not self.full:
            self.behind = False

    def take(self) -> RawEntry | None:
        return self.queue.popleft() if self.queue else None

    def lost(self) -> None:
        """The store lost its data: nothing more is handed over."""
        self.reset = True


class Dispatcher:
    """Every follower of the process by log key."""

    def __init__(self) -> None:
        self.followers: dict[bytes, set[Follower]] = {}

    def __len__(self) -> int:
        return sum(len(f) for f in self.followers.values())

    def add(self, follower: Follower) -> bool:
        """Register; True when its log had no follower yet (its channel must be subscribed)."""
        group = self.followers.setdefault(follower.key, set())
        group.add(follower)
        return len(group) == 1

    def remove(self, follower: Follower) -> bool:
        """Unregister; True when its log has no follower left (its channel may be unsubscribed)."""
        group = self.followers.get(follower.key)
        if group is None or follower not in group:
            return False
        group.discard(follower)
        if group:
            return False
        del self.followers[follower.key]
        return True

    def push(self, key: bytes, payload: bytes) -> list[Follower]:
        """A pushed entry of log `key`: the followers to wake (they took it, or now have to catch up)."""
        group = self.followers.get(key)
        if not group:
            return []
        number, raw = parse_push(payload)
        woken = []
        for follower in group:  # hot loop: usually one follower per job
            was_behind = follower.behind
            if follower.push(number, raw) or (follower.behind and not was_behind and not follower.full):
                woken.append(follower)
        return woken

    def of(self, key: bytes) -> set[Follower]:
        return self.followers.get(key, set())

    def everyone(self) -> list[Follower]:
        return [f for group in self.followers.values() for f in group]
