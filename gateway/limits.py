"""Edge limits of long-lived connections: open streams per tenant, a stream's longest life, and the
rate of a WebSocket client's frames. All in-process: they bound what one gateway process holds."""

from __future__ import annotations

import time

from schemas.enums import ErrorCode

from .errors import ApiError


class Slot:
    """One open stream of a tenant; `release` is idempotent."""

    def __init__(self, owner: StreamSlots, tenant: str) -> None:
        self._owner = owner
        self._tenant = tenant
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._owner._release(self._tenant)


class StreamSlots:
    """At most `limit` open streams of one kind per tenant."""

    def __init__(self, kind: str, limit: int, retry_after_s: int) -> None:
        self.kind = kind
        self.limit = limit
        self.retry_after_s = retry_after_s
        self._open: dict[str, int] = {}

    def open_for(self, tenant: str) -> int:
        return self._open.get(tenant, 0)

    def take(self, tenant: str) -> Slot:
        """A slot, or 429 (rate_limited, Retry-After) when the tenant holds `limit` already."""
        held = self._open.get(tenant, 0)
        if held >= self.limit:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"this API key has {held} {self.kind} streams open, the limit: close one, or retry after"
                f" {self.retry_after_s}s",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self._open[tenant] = held + 1
        return Slot(self, tenant)

    def _release(self, tenant: str) -> None:
        left = self._open.get(tenant, 0) - 1
        if left > 0:
            self._open[tenant] = left
        else:
            self._open.pop(tenant, None)


class Lifetime:
    """The longest a stream stays open."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    @property
    def over(self) -> bool:
        return self._clock() >= self._end

    def message(self, last_id: int | None) -> str:
        resume = f"Last-Event-ID: {last_id}" if last_id is not None else "no Last-Event-ID (nothing was sent yet)"
        return (f"this stream was open {self.seconds:g}s, the longest allowed: reconnect with {resume} to"
                " continue where it stopped")


class TokenBucket:
    """`rate` frames a second on average, `burst` at once; `take` is False for a frame past that."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
