"""Server-sent events of one job: frame formatting (pure) and the job SSE body over `follow_job`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from infra.redis.jobstore import Entry, ReplayExpired
from schemas.api import ErrorBody, ErrorDetail
from schemas.enums import ErrorCode

from .follow import JobFollow
from .limits import Lifetime, Slot

KEEPALIVE = b": keep-alive\n\n"


def frame(entry: Entry) -> bytes:
    """``id``, ``event`` and ``data`` lines; data spanning lines gets one ``data:`` per line."""
    data = b"".join(b"data: " + line + b"\n" for line in entry.data.splitlines() or [b""])
    return b"id: %d\nevent: %s\n%s\n" % (entry.id, entry.type.encode(), data)


def error_frame(code: ErrorCode, message: str) -> bytes:
    body = ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump_json().encode()
    return b"event: error\ndata: " + body + b"\n\n"


async def stream(follow: JobFollow, lifetime: Lifetime | None = None, slot: Slot | None = None) -> AsyncIterator[bytes]:
    """The SSE body: events up to the terminal one, keep-alives while idle, an error frame on expiry
    and when the stream has lived its `lifetime` (the client reconnects with Last-Event-ID).

    Starlette cancels this generator when the client disconnects, which ends the blocking read;
    a disconnect never cancels the job (follow it with ``cancels=False``). `slot` is released at the end.
    """
    last_id: int | None = None
    try:
        yield b"retry: 1000\n\n"
        async for entry in follow:
            if entry is not None:
                last_id = entry.id
            yield KEEPALIVE if entry is None else frame(entry)
            if lifetime is not None and lifetime.over and not (entry is not None and entry.terminal):
                yield error_frame(ErrorCode.DEADLINE_EXCEEDED, lifetime.message(last_id))
                return
    except ReplayExpired as exc:
        yield error_frame(ErrorCode.REPLAY_EXPIRED, str(exc))
    finally:
        await follow.aclose()
        if slot is not None:
            slot.release()
