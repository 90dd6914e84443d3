"""The moderation gate its settings describe."""

from __future__ import annotations

from infra.settings.moderation import ModerationSettings

from .gate import ModerationGate
from .policy import BlocklistClassifier, ProfanityClassifier


def build_gate(settings: ModerationSettings) -> ModerationGate:
    if settings.classifier == "profanity":
        classifier = ProfanityClassifier(settings.threshold)
    elif settings.classifier == "blocklist" or settings.blocklist.strip():
        classifier = BlocklistClassifier([t for t in settings.blocklist.split(",") if t.strip()])
    else:
        classifier = None
    return ModerationGate(classifier, window_chars=settings.window_chars)
