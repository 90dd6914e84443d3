import pytest
from pydantic import ValidationError

from schemas import (
    Accepted, Artifact, Cancelled, Completed, ErrorCode, Failed, ModelInfo, Progress, Started,
    TokenDelta, Usage, is_terminal, parse_event,
)

COMMON = {"job_id": "j", "seq": 3, "attempt": 7, "source": "worker"}
EVENTS = [
    Accepted(**COMMON, tenant="t", modality="text"),
    Started(**COMMON, worker="w", model=ModelInfo(id="m", device="cpu", dtype="float32")),
    TokenDelta(**COMMON, text="héllo", tokens=2),
    Progress(**COMMON, step=1, total=4),
    Artifact(**COMMON, uri="blob://t/j/0.png", mime_type="image/png", bytes=10, sha256="0" * 64),
    Completed(**COMMON, usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)),
    Failed(**COMMON, code=ErrorCode.GENERATION_ERROR, message="boom"),
    Cancelled(**COMMON),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_every_event_round_trips_through_json(event):
    again = parse_event(event.model_dump_json().encode())
    assert again == event and type(again) is type(event)


def test_only_completed_failed_cancelled_are_terminal():
    assert [e.type for e in EVENTS if is_terminal(e)] == ["completed", "failed", "cancelled"]


def test_event_type_is_checked():
    with pytest.raises(ValidationError):
        parse_event({**COMMON, "type": "exploded"})


def test_failed_needs_a_known_code():
    with pytest.raises(ValidationError):
        parse_event({**COMMON, "type": "failed", "code": "weird", "message": "x"})


def test_artifact_checksum_must_be_sha256_hex():
    with pytest.raises(ValidationError):
        Artifact(**COMMON, uri="u", mime_type="image/png", bytes=1, sha256="xyz")
