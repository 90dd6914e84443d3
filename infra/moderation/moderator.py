"""`Moderator`: a text classifier and the policies that turn its scores into decisions.

One per process, built once from the settings (`build_moderator`): the prompt stage, the output
gate and `POST /v1/moderations` all decide through it, so a tenant's policy means the same thing
on a prompt, a token window and an API call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from infra.settings.moderation import ModerationSettings, moderation_enabled

from .policy import Decision, Policy, PolicyBook
from .text import BlocklistClassifier, CategoryClassifier, ProfanityClassifier, TextClassifier

log = logging.getLogger(__name__)


class Moderator:
    def __init__(self, classifier: TextClassifier, policies: PolicyBook | None = None, *,
                 timeout_s: float = 5.0) -> None:
        self.classifier = classifier
        self.policies = policies or PolicyBook()
        self.timeout_s = timeout_s

    @property
    def name(self) -> str:
        return self.classifier.name

    def check(self, texts: Sequence[tuple[str | None, str]]) -> list[Decision]:
        """A decision for each (tenant, text) (CPU work; `check_async` runs it off the loop, bounded)."""
        policies = [self.policies.of(tenant) for tenant, _ in texts]
        masked = [p.mask(text) for p, (_, text) in zip(policies, texts)]
        scored = self.classifier.scores(masked)
        return [p.decide(text, s) for p, text, s in zip(policies, masked, scored)]

    async def check_async(self, texts: Sequence[tuple[str | None, str]]) -> list[Decision]:
        """`check` in a thread, within `timeout_s`; a failure or timeout is decided by each tenant's
        policy (fail closed by default), with the reason in the decision."""
        if not texts:
            return []
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.check, texts), self.timeout_s)
        except Exception as exc:  # the classifier failed: the policy decides, and says so
            error = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.error("moderating a batch of %d failed (%s)", len(texts), error)
            return [self.policies.of(tenant).on_failure(error) for tenant, _ in texts]


def build_moderator(settings: ModerationSettings) -> Moderator | None:
    """The moderator the settings describe (slow: loads the model); None when moderation is off."""
    if not moderation_enabled(settings):
        return None
    policies = settings.policies()
    classifier: TextClassifier
    if settings.classifier == "categories":
        classifier = CategoryClassifier()
    elif settings.classifier == "profanity":
        classifier = ProfanityClassifier()
        policies = _with_threshold(policies, "profanity", settings.threshold)
    else:  # blocklist only: the policies' block lists decide, nothing is scored
        classifier = BlocklistClassifier([])
    return Moderator(classifier, policies, timeout_s=settings.timeout_s)


def _with_threshold(book: PolicyBook, category: str, threshold: float) -> PolicyBook:
    """Every policy of the book with one more category (a classifier's own, outside the taxonomy)."""

    def add(policy: Policy) -> Policy:
        return replace(policy, thresholds={**policy.thresholds, category: threshold})

    return PolicyBook(add(book.default), {t: add(p) for t, p in book.tenants.items()})


def blocklist_moderator(terms: Sequence[str]) -> Moderator:
    """A moderator that blocks the terms and scores nothing else (no model: quick to build)."""
    return Moderator(BlocklistClassifier([]), PolicyBook(Policy.build(block=terms)))
