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


def batch_failure_detail(exc: BaseException, jobs: int) -> str:
    """What each job of a batch that failed as a whole is told of the error (the log keeps all of it).

    The exception's text may quote any job of the batch (its prompt, id or sizes), and the jobs of
    one batch may belong to different tenants: the jobs of a shared batch are told only the
    exception's type. A batch of one job is told the text, which can only be about that job.
    """
    if jobs == 1:
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} in a batch shared with other jobs (the worker's log has the details): resubmit the job"


class JobCancelled(Exception):
    """The job was cancelled; raised from between steps."""
