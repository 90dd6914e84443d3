"""Hypothesis strategies shared by the fuzz tests: hostile JSON (for decoders and the HTTP edge) and
valid contracts built field by field from the models' own limits (for round trips)."""

from __future__ import annotations

import json
from datetime import timezone

from hypothesis import strategies as st

from schemas.enums import AudioFormat, ErrorCode, EventSource, FinishReason, ImageScheduler, Modality, Role
from schemas.events import (
    Accepted,
    Artifact,
    AudioChunk,
    Cancelled,
    Completed,
    Failed,
    ModelInfo,
    ModerationVerdict,
    Progress,
    Started,
    Timings,
    TokenDelta,
    Usage,
)
from schemas.requests import (
    ID_PATTERN,
    ChatMessage,
    ImageParams,
    ImageRequest,
    SpeechParams,
    SpeechRequest,
    TextParams,
    TextRequest,
    TraceContext,
    VideoParams,
    VideoRequest,
    WebhookSpec,
)

# -- hostile JSON -------------------------------------------------------------------------------

#: strings a decoder is unlikely to expect: controls, NUL, lone surrogates, RTL marks, chat tokens
_ODD_STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "a\ud83dz", "\u202e", "\ufeff", "<|im_start|>system",
                "../../etc/passwd", "%00", "NaN", "-0", "1e999", "text", "image", "video", "speech"]

#: any code point, surrogates included (hypothesis leaves them out unless told)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(_ODD_STRINGS),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n),
)

hostile_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=60, max_value=1400).map(lambda e: 2**e),  # past int64, and past float range
    st.integers(min_value=60, max_value=1400).map(lambda e: -(2**e)),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
)

hostile_scalars = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_text)

#: arbitrary nested JSON-ish values (lists and objects of hostile scalars)
hostile_json = st.recursive(
    hostile_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(hostile_text, children, max_size=4),
    ),
    max_leaves=24,
)

#: field names the contracts know, so hostile values reach the validators behind the first check
_KNOWN_FIELDS = [
    "modality", "params", "job_id", "tenant", "user", "session", "model", "priority", "deadline", "trace",
    "webhook", "metadata", "submitted_at", "messages", "role", "content", "max_tokens", "temperature", "top_p",
    "stop", "seed", "input", "voice", "format", "speed", "prompt", "negative_prompt", "width", "height", "steps",
    "guidance", "scheduler", "n", "frames", "fps", "type", "seq", "attempt", "source", "ts", "code", "message",
    "text", "tokens", "index", "uri", "sha256", "reason", "size", "seconds", "stream", "stream_options",
    "response_format", "stream_format", "max_completion_tokens", "url", "events", "traceparent",
]

_MODALITIES = [m.value for m in Modality]
_EVENT_TYPES = ["accepted", "started", "token", "progress", "audio", "artifact", "moderation", "completed",
                "failed", "cancelled"]


def _near_contract(tag: str, tags: list[str]) -> st.SearchStrategy[dict]:
    """An object with the contract's discriminator (valid or not) and known fields holding hostile values."""
    known = st.dictionaries(st.sampled_from(_KNOWN_FIELDS), hostile_json, max_size=8)
    nested = st.dictionaries(st.sampled_from(_KNOWN_FIELDS), hostile_json, max_size=8)
    return st.builds(
        lambda fields, params, value: {**fields, "params": params, tag: value},
        known, nested, st.one_of(st.sampled_from(tags), hostile_json),
    )


near_request = _near_contract("modality", _MODALITIES)
near_event = _near_contract("type", _EVENT_TYPES)


def nested(depth: int) -> bytes:
    """JSON nested `depth` levels deep, alternating arrays and objects."""
    return b'{"a":' * (depth // 2) + b"[" * (depth - depth // 2) + b"1" + b"]" * (depth - depth // 2) + (
        b"}" * (depth // 2)
    )


#: bytes a JSON parser must refuse or survive: deep nesting, huge numbers, bad UTF-8, truncation
hostile_bytes = st.one_of(
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=5000).map(nested),
    st.integers(min_value=4000, max_value=20_000).map(lambda n: b'{"seed": ' + b"9" * n + b"}"),
    st.sampled_from([b"NaN", b"-Infinity", b'{"a": 1e999}', b'"\\ud800"', b'{"\\udfff": 1}', b"\xff\xfe{}",
                     b'{"a": "\xc3"}', b"{", b"[1,", b"\x00", b"  ", b'{"a":1}{"b":2}']),
    hostile_json.map(lambda v: json.dumps(v, allow_nan=True, ensure_ascii=True).encode()),
    st.one_of(near_request, near_event).map(lambda v: json.dumps(v, allow_nan=True).encode()),
)

# -- valid contracts ----------------------------------------------------------------------------

ids = st.from_regex(ID_PATTERN, fullmatch=True)
_short = st.text(max_size=30)
_nonblank = st.text(min_size=1, max_size=60).filter(str.strip)
_seed = st.none() | st.integers(min_value=0, max_value=2**63 - 1)
_side = st.none() | st.integers(min_value=1, max_value=512).map(lambda k: k * 8)
_unit = st.floats(min_value=0, max_value=1e6, allow_nan=False)

def _message(content: st.SearchStrategy[str], **fields: st.SearchStrategy) -> st.SearchStrategy[ChatMessage]:
    """A valid message of any role: a tool result names the call it answers (tool_call_id)."""
    def build(role: Role, call_id: str, **kw) -> ChatMessage:
        return ChatMessage(role=role, tool_call_id=call_id if role is Role.TOOL else None, **kw)
    return st.builds(build, role=st.sampled_from(Role), call_id=st.text(min_size=1, max_size=40),
                     content=content, **fields)


messages = st.builds(
    lambda first, rest: [first, *rest],
    _message(_nonblank),
    st.lists(_message(st.text(max_size=60), name=st.none() | st.text(max_size=64)), max_size=3),
)
text_params = st.builds(
    TextParams, messages=messages, max_tokens=st.integers(1, 32_768), temperature=st.floats(0, 2),
    top_p=st.floats(0, 1, exclude_min=True), stop=st.lists(st.text(min_size=1, max_size=20), max_size=4),
    seed=_seed,
)
speech_params = st.builds(SpeechParams, input=_nonblank, voice=st.text(min_size=1, max_size=20),
                          format=st.sampled_from(AudioFormat), speed=st.floats(0.25, 4))
image_params = st.builds(
    ImageParams, prompt=_nonblank, negative_prompt=st.none() | _short, width=_side, height=_side,
    steps=st.none() | st.integers(1, 500), guidance=st.none() | st.floats(0, 50),
    scheduler=st.none() | st.sampled_from(ImageScheduler), n=st.integers(1, 8), seed=_seed,
)
video_params = st.builds(
    VideoParams, prompt=_nonblank, negative_prompt=st.none() | _short, frames=st.none() | st.integers(1, 1024),
    fps=st.integers(1, 60), width=_side, height=_side, steps=st.none() | st.integers(1, 500),
    guidance=st.none() | st.floats(0, 50), seed=_seed,
)
_common = dict(
    job_id=ids, tenant=ids, user=st.none() | ids, session=st.none() | ids, model=st.none() | _short,
    priority=st.integers(0, 9),
    deadline=st.none() | st.datetimes(timezones=st.sampled_from([timezone.utc])),
    trace=st.none() | st.builds(TraceContext,
                                traceparent=st.from_regex(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                                                          fullmatch=True),
                                tracestate=st.none() | _short),
    webhook=st.none() | st.builds(WebhookSpec, url=st.sampled_from(["https://example.com/hook", "http://h/x"]),
                                  events=st.lists(st.sampled_from(["completed", "failed", "progress"]), min_size=1, max_size=3)),
    metadata=st.dictionaries(st.text(max_size=64), st.text(max_size=100), max_size=4),
    submitted_at=st.floats(0, 4e9),
)
requests = st.one_of(
    st.builds(TextRequest, modality=st.just(Modality.TEXT), params=text_params, **_common),
    st.builds(SpeechRequest, modality=st.just(Modality.SPEECH), params=speech_params, **_common),
    st.builds(ImageRequest, modality=st.just(Modality.IMAGE), params=image_params, **_common),
    st.builds(VideoRequest, modality=st.just(Modality.VIDEO), params=video_params, **_common),
)

_event = dict(job_id=st.text(max_size=128), seq=st.integers(0, 2**40), attempt=st.integers(0, 2**40),
              source=st.sampled_from(EventSource), ts=st.floats(0, 4e9))
_count = st.none() | st.integers(0, 2**31)
_seconds = st.none() | _unit
events = st.one_of(
    st.builds(Accepted, tenant=_short, modality=st.sampled_from(Modality), model=st.none() | _short, **_event),
    st.builds(Started, worker=_short, queue_s=_seconds, **_event,
              model=st.builds(ModelInfo, id=_short, revision=st.none() | _short, device=_short, dtype=_short,
                              random_weights=st.booleans())),
    st.builds(TokenDelta, text=st.text(max_size=20), tokens=st.integers(0, 64), **_event),
    st.builds(Progress, step=st.integers(0, 1000), total=st.integers(1, 1000), stage=st.none() | _short, **_event),
    st.builds(AudioChunk, index=st.integers(0, 100), data=st.text("ABCD+/=", max_size=20),
              sample_rate=st.integers(1, 96_000), duration_s=_unit, text=st.none() | _short, **_event),
    st.builds(Artifact, index=st.integers(0, 8), uri=_short, mime_type=_short, bytes=st.integers(0, 2**40),
              sha256=st.from_regex(r"^[0-9a-f]{64}$", fullmatch=True), width=_count, height=_count,
              frames=_count, duration_s=_seconds, **_event),
    st.builds(ModerationVerdict, target=st.sampled_from(["prompt", "output", "artifact"]), allowed=st.booleans(),
              categories=st.lists(_short, max_size=3), score=st.floats(0, 1), model=_short, **_event),
    st.builds(Completed, finish_reason=st.sampled_from(FinishReason), text=st.none() | st.text(max_size=40),
              usage=st.builds(Usage, prompt_tokens=_count, completion_tokens=_count, total_tokens=_count,
                              images=_count, frames=_count, audio_seconds=_seconds, steps=_count),
              timings=st.builds(Timings, queue_s=_seconds, ttft_s=_seconds, tpot_s=_seconds,
                                generation_s=_seconds, total_s=_seconds),
              **_event),
    st.builds(Failed, code=st.sampled_from(ErrorCode), message=st.text(max_size=40), retryable=st.booleans(),
              **_event),
    st.builds(Cancelled, reason=st.none() | _short, **_event),
)


def _mutate(request, path: tuple[str, ...], value) -> dict:
    data = request.model_dump(mode="json")
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


_MUTABLE = [("job_id",), ("tenant",), ("user",), ("session",), ("model",), ("priority",), ("deadline",),
            ("metadata",), ("submitted_at",), ("webhook",), ("trace",), ("modality",), ("params",)]
_MUTABLE_PARAMS = ["messages", "max_tokens", "temperature", "top_p", "stop", "seed", "input", "voice", "format",
                   "speed", "prompt", "negative_prompt", "width", "height", "steps", "guidance", "scheduler", "n",
                   "frames", "fps"]

#: a valid request with one field (top-level or in params) replaced by a hostile value
mutated_request = st.builds(
    _mutate, requests,
    st.one_of(st.sampled_from(_MUTABLE), st.sampled_from(_MUTABLE_PARAMS).map(lambda k: ("params", k))),
    st.one_of(hostile_scalars, hostile_json),
)

#: a valid request with one of its number fields set to any float, NaN and infinities included
float_mutated_request = st.builds(
    _mutate, requests,
    st.sampled_from([("submitted_at",), ("priority",), ("params", "temperature"), ("params", "top_p"),
                     ("params", "speed"), ("params", "guidance"), ("params", "max_tokens"), ("params", "seed")]),
    st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308]),
              st.floats(allow_nan=True, allow_infinity=True)),
)
