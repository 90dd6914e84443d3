"""Keeps API keys out of URLs before anything logs them.

A browser WebSocket cannot send headers, so the job WebSocket takes ``?api_key=``. uvicorn's access
and connection logs print the query string of the scope the app was given, so this middleware
moves the key into an ``Authorization: Bearer`` header of that same scope (unless one is there
already) and removes it from the query: the log shows the path without it, and authentication
reads the header as for any other request. Plain HTTP never takes a key in the query; one found
there is dropped all the same.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

QUERY_KEY = "api_key"


def split_key(query: bytes) -> tuple[bytes, str | None]:
    """The query string without ``api_key``, and the (last) key it carried."""
    if QUERY_KEY.encode() not in query:
        return query, None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    keys = [value for name, value in pairs if name == QUERY_KEY]
    rest = [(name, value) for name, value in pairs if name != QUERY_KEY]
    return urlencode(rest).encode("latin-1"), (keys[-1] if keys else None)


class QueryKeyMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            query, key = split_key(scope.get("query_string", b""))
            if query != scope.get("query_string", b""):
                scope["query_string"] = query  # in place: uvicorn logs this very scope
                headers = list(scope.get("headers", []))
                if key and scope["type"] == "websocket" and not any(n == b"authorization" for n, _ in headers):
                    headers.append((b"authorization", b"Bearer " + key.encode("latin-1")))
                scope["headers"] = headers
        await self.app(scope, receive, send)
