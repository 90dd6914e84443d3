"""The moderation audit: every decision, per tenant, queryable (`GET /v1/moderation/audit`).

An entry names the job, the stage (prompt, output, artifact), the action (allowed, blocked,
released_unchecked, withheld_unchecked), the categories that fired, the scores, the classifier
and the reason; blocked content is kept only as its SHA-256, so the audit never becomes a store of
harmful text. Entries live in one Redis stream per tenant, trimmed to MODERATION_AUDIT_MAXLEN.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import redis.asyncio as aioredis

from . import keys

#: what a decision did
ACTIONS = ("allowed", "blocked", "released_unchecked", "withheld_unchecked")


def content_hash(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    tenant: str
    job_id: str
    stage: str
    action: str
    categories: list[str] = field(default_factory=list)
    #: only the scores above zero (the rest are zero)
    scores: dict[str, float] = field(default_factory=dict)
    model: str = ""
    reason: str | None = None
    #: SHA-256 of the blocked content; None when it was allowed
    content_sha256: str | None = None
    ts: float = field(default_factory=time.time)

    @staticmethod
    def action_of(allowed: bool, unchecked: bool) -> str:
        """`unchecked`: the classifier failed or could not read the content, and the policy decided."""
        if unchecked:
            return "released_unchecked" if allowed else "withheld_unchecked"
        return "allowed" if allowed else "blocked"


class ModerationAudit:
    def __init__(self, redis: aioredis.Redis, *, maxlen: int = keys.MODERATION_AUDIT_MAXLEN) -> None:
        self._redis = redis
        self._maxlen = maxlen

    async def record(self, entries: Sequence[AuditEntry]) -> None:
        """Append the entries, one pipelined round trip."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for entry in entries:
            data = asdict(entry)
            data["scores"] = {k: v for k, v in entry.scores.items() if v > 0}
            pipe.xadd(keys.moderation_audit(entry.tenant), {"e": json.dumps(data, separators=(",", ":"))},
                      maxlen=self._maxlen, approximate=True)
        await pipe.execute()

    async def query(self, tenant: str, *, limit: int = 100, job_id: str | None = None,
                    before: str | None = None) -> list[tuple[str, dict]]:
        """The tenant's latest entries, newest first, (stream id, entry); `before` pages back."""
        rows = await self._redis.xrevrange(keys.moderation_audit(tenant), max=f"({before}" if before else "+",
                                           min="-", count=limit if job_id is None else max(limit * 20, 1000))
        out = []
        for entry_id, fields in rows:
            entry = json.loads(fields[b"e"] if b"e" in fields else fields["e"])
            if job_id is None or entry["job_id"] == job_id:
                out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, entry))
            if len(out) >= limit:
                break
        return out
