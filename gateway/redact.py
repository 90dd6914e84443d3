"""Keeps credentials out of URLs before anything logs them.

uvicorn's access and connection logs print the query string of the scope the app was given. A
browser's EventSource and WebSocket cannot send headers, so the job event stream and WebSocket take
a job-scoped browser token as ``?token=`` (gateway/tokens.py): this middleware takes it out of the
query of that same scope and keeps it under ``scope["genloom.token"]``, where the routes read it, so
the log shows the path without it. An API key never travels in a URL: ``?api_key=`` is dropped.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

QUERY_KEY = "api_key"
QUERY_TOKEN = "token"
#: where the token taken from the query is kept in the ASGI scope
SCOPE_TOKEN = "genloom.token"
_SECRET_NAMES = (QUERY_KEY, QUERY_TOKEN)


def split_secrets(query: bytes) -> tuple[bytes, str | None]:
    """The query string without ``api_key`` and ``token``, and the (last) token it carried."""
    if not any(name.encode() in query for name in _SECRET_NAMES):
        return query, None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    tokens = [value for name, value in pairs if name == QUERY_TOKEN]
    rest = [(name, value) for name, value in pairs if name not in _SECRET_NAMES]
    return urlencode(rest).encode("latin-1"), (tokens[-1] if tokens else None)


def query_token(scope) -> str | None:
    """The browser token the request carried in its query, if any."""
    return scope.get(SCOPE_TOKEN)


class QueryKeyMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            query, token = split_secrets(scope.get("query_string", b""))
            if query != scope.get("query_string", b""):
                scope["query_string"] = query  # in place: uvicorn logs this very scope
                if token:
                    scope[SCOPE_TOKEN] = token
        await self.app(scope, receive, send)
