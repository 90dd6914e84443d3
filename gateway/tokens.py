"""Browser tokens: short-lived credentials scoped to one job of one tenant.

A browser cannot send an ``Authorization`` header on an EventSource or a WebSocket, and an API key
must never sit in a page's URLs. So a client holding the key asks ``POST /v1/jobs/{id}/token`` for a
token that only that job's event stream (``GET /v1/jobs/{id}/events?token=``) and WebSocket
(``GET /v1/jobs/{id}/ws?token=``) accept, for ``browser_token_ttl_s`` seconds.

A token is ``glt_<payload>.<mac>``: the payload is base64url of ``<expiry unix s>:<tenant>:<job id>``
and the mac is ``HMAC-SHA256(key, "genloom-browser-token-v1:" + payload)`` in base64url. The key
is derived from ``GENLOOM_GATEWAY_BROWSER_TOKEN_SECRET`` (set the same on every gateway replica); when
it is unset each gateway process draws a random one, so its tokens work only on that process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from schemas.enums import ErrorCode

from .errors import ApiError

#: prefix of tokens, recognisable in logs and secret scanners (and never mistaken for an API key)
TOKEN_PREFIX = "glt_"
_CONTEXT = b"genloom-browser-token-v1:"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    token: str
    expires_at: int


class BrowserTokens:
    """Issues and checks job-scoped tokens under one key."""

    def __init__(self, secret: bytes | None, ttl_s: int) -> None:
        master = secret if secret else secrets.token_bytes(32)
        self._key = hmac.new(master, _CONTEXT, hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, _CONTEXT + payload.encode(), hashlib.sha256).digest())

    def issue(self, tenant: str, job_id: str, *, now: float | None = None) -> Grant:
        expires_at = int(time.time() if now is None else now) + self.ttl_s
        payload = _b64(f"{expires_at}:{tenant}:{job_id}".encode())
        return Grant(f"{TOKEN_PREFIX}{payload}.{self._mac(payload)}", expires_at)

    def tenant_for(self, token: str, job_id: str, *, now: float | None = None) -> str:
        """The tenant the token was issued to, if it is genuine, unexpired and for `job_id`; else an ApiError:
        401 unauthorized for a malformed, tampered or expired token, 403 forbidden for another job's."""
        payload, _, mac = token.removeprefix(TOKEN_PREFIX).partition(".")
        if not token.startswith(TOKEN_PREFIX) or not mac or not hmac.compare_digest(self._mac(payload), mac):
            raise _unauthorized("invalid token: ask POST /v1/jobs/{id}/token for a new one")
        try:
            expiry, tenant, scoped = _unb64(payload).decode().split(":", 2)
            expires_at = int(expiry)
        except ValueError:
            raise _unauthorized("invalid token: ask POST /v1/jobs/{id}/token for a new one") from None
        if (time.time() if now is None else now) >= expires_at:
            raise _unauthorized("token expired: ask POST /v1/jobs/{id}/token for a new one")
        if not hmac.compare_digest(scoped.encode(), job_id.encode()):
            raise ApiError(ErrorCode.FORBIDDEN, "this token is for another job")
        return tenant


def _unauthorized(message: str) -> ApiError:
    return ApiError(ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})
