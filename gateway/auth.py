"""API keys → tenants. Keys are kept only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path

from fastapi import Request

from schemas.enums import ErrorCode
from schemas.requests import is_valid_id

from .errors import ApiError

#: prefix of generated keys, so a leaked key is recognisable in logs and secret scanners
KEY_PREFIX = "glk_"


class InvalidKeySpec(ValueError):
    pass


def generate_key() -> str:
    """A new random API key (256 bits) for development."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_pairs(text: str, *, separator: str = ",") -> list[tuple[str, str]]:
    """``key:tenant`` pairs from ``"k1:a,k2:b"`` (or one per line with separator="\\n")."""
    pairs = []
    for raw in text.split(separator):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        key, sep, tenant = item.partition(":")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key or not tenant:
            raise InvalidKeySpec(f"API key entry {item[:6]}... is not key:tenant")
        if not is_valid_id(tenant):
            raise InvalidKeySpec(f"tenant {tenant!r} is not a valid id (letters, digits, _.:@-)")
        pairs.append((key, tenant))
    return pairs


class ApiKeys:
    """Which tenant a presented key belongs to."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._entries = [(_digest(key), tenant) for key, tenant in pairs]

    @classmethod
    def from_settings(cls, spec: str | None, file: Path | None) -> ApiKeys:
        pairs = parse_pairs(spec) if spec else []
        if file is not None:
            pairs += parse_pairs(file.read_text(), separator="\n")
        return cls(pairs)

    def __len__(self) -> int:
        return len(self._entries)

    def tenant_for(self, presented: str) -> str | None:
        """The tenant of a key; every stored digest is compared, so timing says nothing."""
        digest = _digest(presented)
        found = None
        for stored, tenant in self._entries:
            if hmac.compare_digest(stored, digest):
                found = tenant
        return found


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(keys: ApiKeys, authorization: str | None) -> str:
    """The tenant for a request's credentials, or a 401."""
    presented = bearer_token(authorization)
    if not presented:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "missing API key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = keys.tenant_for(presented)
    if tenant is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED, "unknown API key: check the key", headers={"WWW-Authenticate": "Bearer"}
        )
    return tenant


async def tenant_of(request: Request) -> str:
    """FastAPI dependency: the caller's tenant."""
    return authenticate(request.app.state.api_keys, request.headers.get("authorization"))
