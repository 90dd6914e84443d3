"""Moderation gate settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .gate import ModerationGate
from .policy import BlocklistClassifier


class ModerationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_MODERATION_", extra="ignore", frozen=True)

    blocklist: str = Field(
        default="", description="Comma-separated terms that block output; empty passes all text."
    )
    window_chars: int = Field(default=48, ge=1, description="Text held back per moderated window.")


def build_gate(settings: ModerationSettings) -> ModerationGate:
    terms = [t for t in settings.blocklist.split(",") if t.strip()]
    classifier = BlocklistClassifier(terms) if terms else None
    return ModerationGate(classifier, window_chars=settings.window_chars)
