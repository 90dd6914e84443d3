"""Webhook signatures: a key per tenant derived from the deployment's master secret, and a signature
over a timestamp, the event id and the body, so a receiver can reject forgeries and replays.

Each tenant's key is ``hex(HMAC-SHA256(master, "genloom-webhook-v1:" + tenant))``, used as UTF-8
bytes; a tenant fetches its own from ``GET /v1/webhooks/secret``. Knowing one tenant's key tells
nothing about another's. The header is ``X-Genloom-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex> = HMAC-SHA256(key, "<t>.<event id>." + body)``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Genloom-Signature"
EVENT_ID_HEADER = "X-Genloom-Event-Id"
EVENT_TYPE_HEADER = "X-Genloom-Event-Type"

#: how old a signature `verify` accepts by default (5 min), and how far in the future (clock skew)
DEFAULT_TOLERANCE_S = 300

_CONTEXT = b"genloom-webhook-v1:"


def tenant_secret(master: bytes, tenant: str) -> str:
    """The tenant's signing key (what `GET /v1/webhooks/secret` answers)."""
    return hmac.new(master, _CONTEXT + tenant.encode(), hashlib.sha256).hexdigest()


def _mac(key: str | bytes, timestamp: int, event_id: str, body: bytes) -> str:
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, f"{timestamp}.{event_id}.".encode() + body, hashlib.sha256).hexdigest()


def sign(key: str | bytes, event_id: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Genloom-Signature value."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(key, t, event_id, body)}"


def verify(key: str | bytes, event_id: str, body: bytes, header: str, *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """What a receiver runs: the signature matches and its timestamp is within `tolerance_s`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = _mac(key, t, event_id, body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
