"""Errors raised by the media engines; each carries a stable code for the `failed` event."""

from __future__ import annotations


class InvalidParameter(ValueError):
    """A request parameter the engine cannot serve; ``code`` is stable, ``message`` is for users."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class GenerationCancelled(Exception):
    """Raised from inside the denoising loop when the caller asked to stop."""

    code = "cancelled"

    def __init__(self, steps_done: int) -> None:
        super().__init__(f"generation cancelled after {steps_done} step(s)")
        self.steps_done = steps_done
