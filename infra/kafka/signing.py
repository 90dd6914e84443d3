"""Signed job requests: the gateway vouches for who submitted a job, and workers run only what it
vouched for, so a message written straight onto a job topic cannot run under another tenant.

The signature travels in the ``genloom-signature`` Kafka header, not in the request: the wire
contract (`GenerationRequest`, also the HTTP body) stays unchanged, and the header goes with the
message from `genloom.requests` to its job topic (the routing agent forwards it). Its value is
``v1=<hex>`` with ``<hex> = HMAC-SHA256(key, "genloom-request-v1\\n<job_id>\\n<tenant>\\n<modality>\\n<fingerprint>")``;
the fingerprint is a SHA-256 over the rest of the request, so no field can be changed either.

A producer of its own that writes to `genloom.requests` (or a job topic) signs with the same key
(``GENLOOM_REQUEST_SIGNING_KEY``)::

    headers = signature_headers(key, request)
    await producer.send(REQUESTS, encode(request), key=request.key.encode(), headers=headers)

A request the gateway publishes is qualified (``job_id`` the internal id scoped by tenant,
``client_job_id`` the tenant's; see `schemas.requests.qualified`) before it is signed, so the
signature binds the internal id to its tenant. A producer's request on `genloom.requests` may be
signed unqualified: the routing agent checks that signature, qualifies the request and signs it
again. One written straight to a job topic is qualified by its producer before signing.

With no key configured nothing is signed and nothing is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from schemas import AnyRequest

SIGNATURE_HEADER = "genloom-signature"

_CONTEXT = "genloom-request-v1"
#: fields that differ between two submissions of the same job without making them different jobs
_NOT_FINGERPRINTED = frozenset({"job_id", "submitted_at"})


def fingerprint(request: AnyRequest) -> str:
    """What makes two submissions of one job id the same request (SHA-256 of canonical JSON)."""
    canonical = json.dumps(
        request.model_dump(mode="json", exclude=set(_NOT_FINGERPRINTED)), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _key(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def signature(key: str | bytes, request: AnyRequest) -> str:
    """The header's value for `request`."""
    signed = "\n".join((_CONTEXT, request.job_id, request.tenant, request.modality.value, fingerprint(request)))
    return "v1=" + hmac.new(_key(key), signed.encode(), hashlib.sha256).hexdigest()


def signature_headers(key: str | bytes | None, request: AnyRequest) -> list[tuple[str, bytes]]:
    """The Kafka headers a producer sends `request` with: its signature, or none without a key."""
    return [(SIGNATURE_HEADER, signature(key, request).encode())] if key else []


def header(headers: Iterable[tuple[str, bytes]] | None, name: str = SIGNATURE_HEADER) -> bytes | None:
    """The last value of header `name` (None when absent)."""
    found = None
    for given, value in headers or ():
        if given == name:
            found = value
    return found


def refusal(key: str | bytes | None, request: AnyRequest, headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """Why `request` must not run (a message for its failed event), or None when it may: it carries a
    valid signature, or no key is configured."""
    if not key:
        return None
    given = header(headers)
    if given is None:
        return ("the request is not signed: publish it through the gateway, or sign it with"
                " GENLOOM_REQUEST_SIGNING_KEY (infra.kafka.signing.signature_headers)")
    if not hmac.compare_digest(given, signature(key, request).encode()):
        return "the request's signature does not match its job_id, tenant, modality or content"
    return None
