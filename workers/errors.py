"""Exceptions a modality handler raises to end a job with a specific outcome."""

from __future__ import annotations

from schemas.enums import ErrorCode


class JobError(Exception):
    """End the job with a `failed` event carrying this stable code and message."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class JobCancelled(Exception):
    """The job was cancelled; raised from between steps."""
