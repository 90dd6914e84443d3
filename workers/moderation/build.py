"""The moderation gate its settings describe."""

from __future__ import annotations

from infra.moderation.moderator import build_moderator
from infra.settings.moderation import ModerationSettings

from .gate import ModerationGate


def build_gate(settings: ModerationSettings) -> ModerationGate:
    return ModerationGate(build_moderator(settings, images=True), window_chars=settings.window_chars,
                          window_tokens=settings.window_tokens, first_window_tokens=settings.first_window_tokens,
                          idle_s=settings.window_idle_s, mode=settings.window_mode, hold_tokens=settings.hold_tokens)
