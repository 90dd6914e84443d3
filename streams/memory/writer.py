"""What the memory writer decides, apart from Kafka (pure, and tested so): which jobs are remembered,
what of a job is kept as its interaction, and where the writer finds a job's user again when its
`completed` event arrives (the event names only the job).

A job's interaction is kept in two steps. Its request (already redacted: the writer reads the
workers' topics, after the privacy stage) is noted in Redis under the job id with its owner, and
the user's turn goes to the session's recent turns. When the job's `completed` event passes, the
note gives the owner back and the interaction, now with its answer, is remembered: stored, embedded
and searched for facts (streams/memory/ingest.py). A job that fails or is cancelled leaves only the
note, which expires.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from infra.memory.base import Interaction
from infra.settings.memory import MemorySettings
from schemas import AnyRequest, ImageRequest, SpeechRequest, TextRequest, VideoRequest
from schemas.enums import EventType, Role
from schemas.events import may_be

#: the most characters of one prompt or answer kept as an interaction (a memory is a gist, not an archive)
MAX_KEPT_CHARS = 4000


@dataclass(frozen=True)
class PendingJob:
    """What the writer notes about a job until it completes."""

    tenant: str
    user: str
    session: str | None
    modality: str
    prompt: str
    created_at: float

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> PendingJob | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    def interaction(self, job_id: str, answer: str | None, *, retention_s: float) -> Interaction:
        return Interaction(id=job_id, tenant=self.tenant, user=self.user, session=self.session,
                           modality=self.modality, prompt=self.prompt, answer=_cut(answer) if answer else None,
                           created_at=self.created_at, expires_at=self.created_at + retention_s)


def prompt_of(request: AnyRequest) -> str:
    """The user's own words in a job: a chat's last user turn (the earlier turns were remembered with
    their own jobs), an image or video prompt, the text to speak."""
    match request:
        case TextRequest():
            for message in reversed(request.params.messages):
                if message.role is Role.USER and message.content.strip():
                    return _cut(message.content.strip())
            return ""
        case ImageRequest() | VideoRequest():
            return _cut(request.params.prompt.strip())
        case SpeechRequest():
            return _cut(request.params.input.strip())
    return ""


def pending_job(request: AnyRequest, settings: MemorySettings, now: float) -> PendingJob | None:
    """The note for a job whose user is remembered, or None (no user, memory off for the tenant, nothing said)."""
    if request.user is None or not settings.remembers(request.tenant):
        return None
    prompt = prompt_of(request)
    if not prompt:
        return None
    return PendingJob(tenant=request.tenant, user=request.user, session=request.session,
                      modality=request.modality.value, prompt=prompt, created_at=now)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_KEPT_CHARS else text[:MAX_KEPT_CHARS] + "…"


#: the events the writer reads (the events topic is mostly tokens: it parses only what may be one)
READS = frozenset({EventType.COMPLETED})


def is_completed(raw: bytes | None) -> bool:
    """Whether an event's JSON may be a `completed` event, without parsing it."""
    return may_be(raw, READS)
