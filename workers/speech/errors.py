"""Speech failures: a request's are `workers.errors.JobError`s; a voice that cannot load is a deployment error."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.enums import ErrorCode
from workers.errors import JobError


def unknown_voice(voice: str, known: Iterable[str]) -> JobError:
    """A voice that is not installed; the message lists the ones that are."""
    names = ", ".join(sorted(known)) or "(none installed)"
    return JobError(ErrorCode.UNKNOWN_VOICE, f"unknown voice {voice!r}: use one of {names}")
