"""Moderation gate settings, and whether they turn the gate on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModerationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_MODERATION_", extra="ignore", frozen=True)

    classifier: Literal["none", "blocklist", "profanity"] = Field(
        default="none",
        description="Text moderation: none (released at once), blocklist (the terms below), profanity"
        " (alt-profanity-check's model; install the `moderation` extra).",
    )
    blocklist: str = Field(default="", description="Comma-separated terms that block output (classifier=blocklist).")
    threshold: float = Field(default=0.8, ge=0.0, le=1.0, description="Profanity probability that blocks a window.")
    window_chars: int = Field(default=48, ge=1, description="Text held back per moderated window.")


def moderation_enabled(settings: ModerationSettings) -> bool:
    """Whether output passes through the gate; with nothing to check, workers publish straight to
    `genloom.events` and save the hop."""
    return settings.classifier != "none" or bool(settings.blocklist.strip())

