"""What the prompt moderation stage checks, and what it tells the job's owner (pure)."""

from __future__ import annotations

from infra.moderation.policy import Decision
from schemas import AnyRequest, ImageRequest, SpeechRequest, TextRequest, VideoRequest
from schemas.enums import ErrorCode

from ..stages import Failure


def moderated_text(request: AnyRequest) -> str:
    """The text a job asks to be generated from. Every chat message counts (an earlier turn, or one
    written as the assistant's, steers the answer as much as the last); a negative prompt does not: it
    names what must not appear ("no blood"), so checking it would block careful prompts."""
    match request:
        case TextRequest():
            return "\n".join(m.content for m in request.params.messages)
        case ImageRequest() | VideoRequest():
            return request.params.prompt
        case SpeechRequest():
            return request.params.input
    raise TypeError(f"no prompt text for {type(request).__name__}")


def failure(decision: Decision) -> Failure | None:
    """How a job whose prompt was not allowed ends (None: it goes on)."""
    if decision.allowed:
        return None
    if decision.categories:
        return Failure(ErrorCode.CONTENT_FILTERED,
                       f"the prompt was blocked by moderation (categories: {', '.join(decision.categories)});"
                       " nothing was generated: rephrase it")
    return Failure(ErrorCode.CONTENT_FILTERED,
                   f"the prompt was not generated from: {decision.reason}; retry later", retryable=True)
