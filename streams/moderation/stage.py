"""`ModerationStage`: every pending prompt of a batch checked in one classifier call (off the event loop,
but for short batches a cheap classifier checks on it: `Moderator.check_async`); the decisions go to the
moderation audit once the batch's jobs are sent. A blocked prompt ends its job with a `failed` event
(content_filtered, naming the categories) and generates nothing; a prompt the classifier could not check
is decided by its tenant's policy (fail closed by default; fail open goes on, and its `prepared` event
lists `moderation` as degraded)."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from infra.metrics import moderation_decided
from infra.moderation.moderator import Moderator
from infra.redis.audit import AuditEntry, ModerationAudit, content_hash

from ..stages import Item
from .logic import failure, moderated_text

log = logging.getLogger(__name__)


class ModerationStage:
    name = "moderation"

    def __init__(self, moderator: Moderator, audit: ModerationAudit | None = None) -> None:
        self._moderator = moderator
        self._audit = audit
        #: decisions not yet in the audit: written in `after_sent`, once the batch's jobs are on their way
        self._owed: list[AuditEntry] = []

    async def run(self, items: list[Item]) -> None:
        pending = [item for item in items if item.pending]
        if not pending:
            return
        texts = [moderated_text(item.request) for item in pending]
        decisions = await self._moderator.check_async([(i.request.tenant, t) for i, t in zip(pending, texts)])
        entries = []
        for item, text, decision in zip(pending, texts, decisions):  # hot loop: one pass over the batch
            item.end = failure(decision)
            unchecked = decision.reason is not None and not decision.categories
            if item.pending and unchecked:  # released unchecked: the tenant's policy fails open
                item.degraded.append(self.name)
            request, action = item.request, AuditEntry.action_of(decision.allowed, unchecked)
            moderation_decided("prompt", action, decision.categories)
            entries.append(AuditEntry(
                tenant=request.tenant, job_id=request.client_job_id or request.job_id, stage="prompt",
                action=action, categories=decision.categories,
                scores=decision.scores, model=self._moderator.name, reason=decision.reason,
                content_sha256=None if decision.allowed else content_hash(text)))
        if self._audit is not None:
            self._owed += entries

    async def after_sent(self, items: list[Item]) -> None:
        """The batch's decisions into the audit, after its jobs were sent: a Redis round trip off the time to
        first token (a process that dies in between loses those records, as a failed write does)."""
        entries, self._owed = self._owed, []
        if not entries:
            return
        try:
            await self._audit.record(entries)
        except (RedisError, OSError) as exc:  # the decisions stand; only their record is missing
            log.error("%d prompt moderation decision(s) not audited (%s)", len(entries), type(exc).__name__)


class ModerationOff:
    """The stage when GENLOOM_MODERATION_CLASSIFIER=none: it checks nothing."""

    name = "moderation"

    async def run(self, items: list[Item]) -> None:
        return None
