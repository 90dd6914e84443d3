"""Each job's placeholder mapping (``<PERSON_1>`` -> the value it replaced), encrypted at rest.

The privacy stage writes it before the job reaches a worker; the gateway reads it to restore the
values in what the requester sees. Redis only ever holds ciphertext: AES-256-GCM under a key
derived from ``GENLOOM_PRIVACY_KEY``, with the job id as associated data, so a mapping copied onto
another job's key does not decrypt. It expires with the job (`keys.REDACTIONS_TTL_S`).
"""

from __future__ import annotations

import hashlib
import json
import os

import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import keys

_VERSION = b"\x01"
_NONCE_BYTES = 12


def derive_key(secret: bytes) -> bytes:
    """256 bits from a secret of any length (the setting is a free-form string)."""
    return hashlib.sha256(b"genloom-redactions-v1\n" + secret).digest()


class RedactionVault:
    def __init__(self, redis: aioredis.Redis, secret: bytes, *, ttl_s: int = keys.REDACTIONS_TTL_S) -> None:
        self._redis = redis
        self._aead = AESGCM(derive_key(secret))
        self._ttl = ttl_s

    def seal(self, job_id: str, mapping: dict[str, str]) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(mapping, ensure_ascii=False, separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, job_id.encode())

    def open(self, job_id: str, sealed: bytes) -> dict[str, str] | None:
        """The mapping, or None when `sealed` is not a mapping of this job under this key."""
        if not sealed.startswith(_VERSION):
            return None
        nonce, body = sealed[1:1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES:]
        try:
            return json.loads(self._aead.decrypt(nonce, body, job_id.encode()))
        except (InvalidTag, ValueError):
            return None

    async def put_many(self, mappings: dict[str, dict[str, str]]) -> None:
        """Store the mappings of a batch of jobs in one round trip (empty ones are not stored)."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id, mapping in mappings.items():
            if mapping:
                pipe.set(keys.redactions(job_id), self.seal(job_id, mapping), ex=self._ttl)
        await pipe.execute()

    async def get(self, job_id: str) -> dict[str, str]:
        """The job's mapping; empty when it has none (nothing redacted, expired, or another key)."""
        sealed = await self._redis.get(keys.redactions(job_id))
        return (self.open(job_id, sealed) or {}) if sealed else {}
