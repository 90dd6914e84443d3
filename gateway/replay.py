"""Following a job's replay log from a cursor, from any gateway instance (state is only in Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.redis import keys
from schemas.events import TERMINAL_TYPES

#: most entries read per Redis call
_BATCH = 256


@dataclass(frozen=True)
class Entry:
    id: int
    type: str
    data: bytes

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


class ReplayExpired(Exception):
    def __init__(self, after: int, first: int | None) -> None:
        kept = f"the log now starts at {first}" if first else "the log has expired"
        super().__init__(
            f"events after {after} are no longer kept ({kept}): fetch GET /v1/jobs/{{id}} for the"
            " job's state, or reconnect without Last-Event-ID to follow from the oldest event kept"
        )


def entry_number(stream_id: bytes) -> int:
    return int(stream_id.split(b"-", 1)[0])


def parse_cursor(value: str | None) -> int | None:
    """A Last-Event-ID as a replay entry number; None when absent, ValueError when not one."""
    if value is None or value.strip() == "":
        return None
    number = int(value.strip())
    if number < 0:
        raise ValueError("negative")
    return number


async def follow(
    redis: aioredis.Redis, job_id: str, record: dict[str, str], after: int | None, block_ms: int
) -> AsyncIterator[Entry | None]:
    """Entries after `after`, in order, ending with the terminal one; None after each idle block.

    Without a cursor the stream starts at the oldest entry kept. Entry numbers are consecutive,
    so a gap after an explicit cursor means the log was trimmed past it: ReplayExpired.
    """
    terminal_id = int(record.get("terminal_id", "0"))
    if terminal_id and after is not None and after >= terminal_id:
        return
    log_key = keys.replay_log(job_id)
    if (after or 0) < int(record.get("last_event_id", "0")):
        first = await redis.xrange(log_key, count=1)
        first_id = entry_number(first[0][0]) if first else None
        if after is None and first_id is not None:
            after = first_id - 1
        elif first_id is None or first_id > (after or 0) + 1:
            raise ReplayExpired(after or 0, first_id)
    after = after or 0
    cursor = after
    while True:
        reply = await redis.xread({log_key: f"{cursor}-0"}, count=_BATCH, block=block_ms)
        if not reply:
            yield None
            continue
        for stream_id, fields in reply[0][1]:
            number = entry_number(stream_id)
            if number != cursor + 1:
                raise ReplayExpired(cursor, number)
            cursor = number
            entry = Entry(number, fields[b"type"].decode(), fields[b"data"])
            yield entry
            if entry.terminal:
                return
