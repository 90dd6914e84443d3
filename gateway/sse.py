"""Server-sent events of one job: frame formatting (pure) and the job SSE body over `follow_job`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from infra.redis.jobstore import Entry, ReplayExpired
from schemas.api import ErrorBody, ErrorDetail
from schemas.enums import ErrorCode

from .follow import JobFollow

KEEPALIVE = b": keep-alive\n\n"


def frame(entry: Entry) -> bytes:
    """``id``, ``event`` and ``data`` lines; data spanning lines gets one ``data:`` per line."""
    data = b"".join(b"data: " + line + b"\n" for line in entry.data.splitlines() or [b""])
    return b"id: %d\nevent: %s\n%s\n" % (entry.id, entry.type.encode(), data)


def error_frame(code: ErrorCode, message: str) -> bytes:
    body = ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump_json().encode()
    return b"event: error\ndata: " + body + b"\n\n"


async def stream(follow: JobFollow) -> AsyncIterator[bytes]:
    """The SSE body: events up to the terminal one, keep-alives while idle, an error frame on expiry.

    Starlette cancels this generator when the client disconnects, which ends the blocking read;
    a disconnect never cancels the job (follow it with ``cancels=False``).
    """
    yield b"retry: 1000\n\n"
    try:
        async for entry in follow:
            yield KEEPALIVE if entry is None else frame(entry)
    except ReplayExpired as exc:
        yield error_frame(ErrorCode.REPLAY_EXPIRED, str(exc))
