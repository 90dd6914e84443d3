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

from .image import BadImage, ImageClassifier, NsfwImageClassifier, check_image, sample_video_frames
from .policy import Decision, Policy, PolicyBook
from .text import INLINE_CHARS, BlocklistClassifier, CategoryClassifier, ProfanityClassifier, TextClassifier

log = logging.getLogger(__name__)


class Moderator:
    def __init__(self, classifier: TextClassifier, policies: PolicyBook | None = None, *,
                 timeout_s: float = 5.0, images: ImageClassifier | None = None) -> None:
        self.classifier = classifier
        self.policies = policies or PolicyBook()
        self.timeout_s = timeout_s
        #: None: this process checks no images
        self.images = images

    @property
    def name(self) -> str:
        return self.classifier.name

    def check(self, texts: Sequence[tuple[str | None, str]]) -> list[Decision]:
        """A decision for each (tenant, text) (CPU work; `check_async` runs it off the loop, bounded)."""
        policies = [self.policies.of(tenant) for tenant, _ in texts]
        masked = [p.mask(text) for p, (_, text) in zip(policies, texts)]
        scored = self.classifier.scores(masked)
        return [p.decide(text, s) for p, text, s in zip(policies, masked, scored)]

    def check_images(self, images: Sequence[tuple[str | None, bytes]]) -> list[Decision]:
        """A decision for each (tenant, encoded image); raises BadImage for bytes that are not one."""
        if self.images is None:
            raise RuntimeError("this moderator was built without an image classifier")
        for _, data in images:  # before any classifier sees them: a bad file is the caller's error
            check_image(data)
        scored = self.images.scores([data for _, data in images])
        return [self.policies.of(tenant).decide("", s) for (tenant, _), s in zip(images, scored)]

    def check_artifact(self, tenant: str | None, mime: str, data: bytes, *, frames: int = 8) -> Decision:
        """A decision on a generated file: an image as it is, a video by `frames` frames sampled across
        it (flagged if any frame is), anything else (speech) allowed here: speech is checked by its
        text. Raises BadImage for a file that does not decode."""
        if mime.startswith("image/"):
            return self.check_images([(tenant, data)])[0]
        if mime.startswith("video/"):
            decisions = self.check_images([(tenant, f) for f in sample_video_frames(data, frames)])
            scores: dict[str, float] = {}
            for d in decisions:
                for category, score in d.scores.items():
                    scores[category] = max(score, scores.get(category, 0.0))
            fired = sorted({c for d in decisions for c in d.categories})
            return Decision(not fired, fired, scores)
        return Decision(True, [], {})

    async def check_artifact_async(self, tenant: str | None, mime: str, data: bytes,
                                   *, frames: int = 8) -> Decision:
        """`check_artifact` off the loop, bounded by `timeout_s`; a failure or timeout is the tenant's
        policy's to decide. A file that does not decode raises BadImage: never released unchecked."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.check_artifact, tenant, mime, data, frames=frames), self.timeout_s)
        except BadImage:
            raise
        except Exception as exc:  # the classifier failed: the policy decides, and says so
            error = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.error("moderating a %s artifact failed (%s)", mime, error)
            return self.policies.of(tenant).on_failure(error)

    async def check_async(self, texts: Sequence[tuple[str | None, str]]) -> list[Decision]:
        """`check` in a thread, within `timeout_s`; a failure or timeout is decided by each tenant's
        policy (fail closed by default), with the reason in the decision. A cheap classifier (`inline`)
        checks a batch of at most `INLINE_CHARS` characters here, on the loop: the thread's handoff cost
        more than the check."""
        if getattr(self.classifier, "inline", False) and sum(len(t) for _, t in texts) <= INLINE_CHARS:
            try:
                return self.check(texts)
            except Exception as exc:
                return self._failed(texts, type(exc).__name__)
        return await self._bounded(self.check, texts)

    async def check_images_async(self, images: Sequence[tuple[str | None, bytes]]) -> list[Decision]:
        """`check_images` as `check_async` runs `check`; an unreadable image is withheld (never
        released unchecked), whatever the policy."""
        return await self._bounded(self.check_images, images)

    async def _bounded(self, check, items: Sequence[tuple[str | None, object]]) -> list[Decision]:
        if not items:
            return []
        try:
            return await asyncio.wait_for(asyncio.to_thread(check, items), self.timeout_s)
        except BadImage:
            raise
        except Exception as exc:  # the classifier failed: the policy decides, and says so
            return self._failed(items, "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)

    def _failed(self, items: Sequence[tuple[str | None, object]], error: str) -> list[Decision]:
        log.error("moderating a batch of %d failed (%s)", len(items), error)
        return [self.policies.of(tenant).on_failure(error) for tenant, _ in items]


def build_moderator(settings: ModerationSettings, *, images: bool = False) -> Moderator | None:
    """The moderator the settings describe (slow: loads the models; the image one only with
    `images`); None when moderation is off."""
    if not moderation_enabled(settings):
        return None
    policies = settings.policies()
    classifier: TextClassifier
    if settings.classifier == "categories":
        classifier = CategoryClassifier()
    elif settings.classifier == "llama-guard":
        from .llama_guard import LlamaGuardClassifier  # torch and transformers: only when chosen

        classifier = LlamaGuardClassifier(settings.llama_guard_model, device=settings.llama_guard_device)
    elif settings.classifier == "profanity":
        classifier = ProfanityClassifier()
        policies = _with_threshold(policies, "profanity", settings.threshold)
    else:  # blocklist only: the policies' block lists decide, nothing is scored
        classifier = BlocklistClassifier([])
    image_classifier = NsfwImageClassifier() if images and settings.classifier in ("categories", "llama-guard") else None
    return Moderator(classifier, policies, timeout_s=settings.timeout_s, images=image_classifier)


def _with_threshold(book: PolicyBook, category: str, threshold: float) -> PolicyBook:
    """Every policy of the book with one more category (a classifier's own, outside the taxonomy)."""

    def add(policy: Policy) -> Policy:
        return replace(policy, thresholds={**policy.thresholds, category: threshold})

    return PolicyBook(add(book.default), {t: add(p) for t, p in book.tenants.items()})


def blocklist_moderator(terms: Sequence[str]) -> Moderator:
    """A moderator that blocks the terms and scores nothing else (no model: quick to build)."""
    return Moderator(BlocklistClassifier([]), PolicyBook(Policy.build(block=terms)))
