"""`ModerationStage`: every pending prompt of a batch checked in one classifier call, off the event
loop. A blocked prompt ends its job with a `failed` event (content_filtered, naming the categories)
and generates nothing; a prompt the classifier could not check is decided by its tenant's policy
(fail closed by default; fail open goes on, and its `prepared` event lists `moderation` as degraded)."""

from __future__ import annotations

from infra.moderation.moderator import Moderator

from ..stages import Item
from .logic import failure, moderated_text


class ModerationStage:
    name = "moderation"

    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator

    async def run(self, items: list[Item]) -> None:
        pending = [item for item in items if item.pending]
        if not pending:
            return
        decisions = await self._moderator.check_async(
            [(item.request.tenant, moderated_text(item.request)) for item in pending])
        for item, decision in zip(pending, decisions):  # hot loop: one pass over the batch
            item.end = failure(decision)
            if item.pending and decision.reason:  # released unchecked: the tenant's policy fails open
                item.degraded.append(self.name)


class ModerationOff:
    """The stage when GENLOOM_MODERATION_CLASSIFIER=none: it checks nothing."""

    name = "moderation"

    async def run(self, items: list[Item]) -> None:
        return None
