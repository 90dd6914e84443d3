"""A small async client of the gateway's job API (httpx), used by the CLI, the benchmarks and the tests.

`events()` follows a job's SSE stream and, when the connection drops, reconnects with
Last-Event-ID, so the caller sees every event once, in order, up to the terminal one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from schemas.events import TERMINAL_TYPES


class GenloomError(Exception):
    """An error answer of the gateway (or an `event: error` on a stream)."""

    def __init__(self, status: int | None, code: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.param = param


@dataclass(frozen=True)
class StreamEvent:
    id: int
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


def _error_from(response: httpx.Response) -> GenloomError:
    try:
        err = response.json()["error"]
        return GenloomError(response.status_code, err["code"], err["message"], err.get("param"))
    except (ValueError, KeyError, TypeError):
        return GenloomError(response.status_code, "http_error", response.text[:500])


class SseParser:
    """Incremental SSE parser: feed lines, get (id, event, data) when a blank line ends one."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str | None, str, str] | None:
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            out = (self._id, self._event, "\n".join(self._data))
            self._id, self._event, self._data = None, "message", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class GenloomClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_reconnects: int = 5,
        backoff_s: float = 0.2,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, read=None), transport=transport,
        )
        self._max_reconnects = max_reconnects
        self._backoff = backoff_s

    async def __aenter__(self) -> GenloomClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()

    async def submit(self, request: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._call("POST", "/v1/jobs", json=request, headers=headers)

    async def get(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/jobs/{job_id}")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/jobs/{job_id}/cancel")

    async def browser_token(self, job_id: str) -> dict[str, Any]:
        """``{token, expires_at}``: a short-lived token a browser passes as ``?token=`` to follow this one job."""
        return await self._call("POST", f"/v1/jobs/{job_id}/token")

    async def feedback(self, job_id: str, *, rating: int | None = None, correction: str | None = None,
                       preference: str | None = None) -> dict[str, Any]:
        """Feedback on one of your jobs: it updates its user's memory (202: applied in order, shortly)."""
        body = {k: v for k, v in (("job_id", job_id), ("rating", rating), ("correction", correction),
                                  ("preference", preference)) if v is not None}
        return await self._call("POST", "/v1/feedback", json=body)

    async def user_data(self, user: str) -> dict[str, Any]:
        """Everything kept about one of your users."""
        return await self._call("GET", f"/v1/users/{quote(user, safe='')}/data")

    async def erase_user(self, user: str) -> dict[str, Any]:
        """Erase a user everywhere; the report's `status` is `erased`, or `pending` (follow `erasure`)."""
        return await self._call("DELETE", f"/v1/users/{quote(user, safe='')}/data")

    async def erasure(self, user: str, erase_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/users/{quote(user, safe='')}/erasures/{erase_id}")

    async def set_memory(self, user: str, enabled: bool) -> dict[str, Any]:
        """Turn memory on or off for a user (consent)."""
        return await self._call("PUT", f"/v1/users/{quote(user, safe='')}/memory", json={"enabled": enabled})

    async def events(self, job_id: str, last_event_id: int | None = None) -> AsyncIterator[StreamEvent]:
        """Every event after `last_event_id`, through reconnects, ending after the terminal one."""
        cursor = last_event_id
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if cursor is not None:
                headers["Last-Event-ID"] = str(cursor)
            try:
                async with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error_from(response)
                    parser = SseParser()
                    async for line in response.aiter_lines():
                        item = parser.feed(line)
                        if item is None:
                            continue
                        ident, kind, data = item
                        if kind == "error":
                            err = json.loads(data)["error"]
                            raise GenloomError(None, err["code"], err["message"], err.get("param"))
                        event = StreamEvent(int(ident), kind, json.loads(data))
                        cursor = event.id
                        failures = 0
                        yield event
                        if event.terminal:
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                failure = exc
            else:
                failure = ConnectionError("the stream ended before the job's terminal event")
            failures += 1
            if failures > self._max_reconnects:
                raise GenloomError(None, "backend_unavailable", f"event stream lost: {failure}") from failure
            await asyncio.sleep(self._backoff * 2 ** (failures - 1))
