"""Property tests of the wire contracts: arbitrary input never raises anything but a validation error
(described with a stable code), and every valid contract survives the trip through JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infra.blob.base import artifact_key
from infra.kafka.codec import encode
from schemas.control import CancelJob, parse_control
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error, validation_error_param
from schemas.events import parse_event
from schemas.openai import (
    ChatCompletionRequest,
    ImageGenerationRequest,
    SpeechCreateRequest,
    VideoCreateRequest,
)
from schemas.requests import parse_request
from tests.fuzz.settings import SCHEMA_EXAMPLES, SEED
from tests.fuzz.strategies import (
    events,
    float_mutated_request,
    hostile_bytes,
    hostile_json,
    ids,
    mutated_request,
    near_event,
    near_request,
    requests,
)

pytestmark = [pytest.mark.fuzz,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]

_SETTINGS = settings(max_examples=SCHEMA_EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def FUZZ(test):
    """The run's size and seed (tests/fuzz/settings.py) on a @given test."""
    return seed(SEED)(_SETTINGS(test))

_OPENAI_BODIES = (ChatCompletionRequest, ImageGenerationRequest, SpeechCreateRequest, VideoCreateRequest)


def _described(exc: ValidationError) -> None:
    """What the edge and the dead-letter path do with a validation error: a stable code and a message."""
    code, message = describe_validation_error(exc)
    assert isinstance(code, ErrorCode)
    assert isinstance(message, str) and message
    assert describe_validation_error(exc) == (code, message)
    param = validation_error_param(exc)
    assert param is None or isinstance(param, str)
    message.encode("utf-8", "surrogatepass")  # printable into a log or a JSON error


def _only_validation_errors(parse, data):
    """What `parse` accepted (None when it refused `data` with a described validation error)."""
    try:
        return parse(data)
    except ValidationError as exc:
        _described(exc)
        return None


def _survives_the_wire(message, parse) -> None:
    """Whatever a decoder accepts, the next process decodes to the same message."""
    if message is not None:
        assert parse(encode(message)) == message


@FUZZ
@given(st.one_of(hostile_json, near_request, mutated_request, float_mutated_request))
def test_parse_request_on_any_object(data):
    _survives_the_wire(_only_validation_errors(parse_request, json.dumps(data, allow_nan=True)), parse_request)
    if isinstance(data, dict):
        _survives_the_wire(_only_validation_errors(parse_request, data), parse_request)


@FUZZ
@given(st.one_of(hostile_json, near_event))
def test_parse_event_on_any_object(data):
    _survives_the_wire(_only_validation_errors(parse_event, json.dumps(data, allow_nan=True)), parse_event)
    if isinstance(data, dict):
        _survives_the_wire(_only_validation_errors(parse_event, data), parse_event)


@FUZZ
@given(hostile_bytes)
def test_decoders_on_any_bytes(raw):
    for parse in (parse_request, parse_event, parse_control):
        _survives_the_wire(_only_validation_errors(parse, raw), parse)


@FUZZ
@given(st.one_of(hostile_json, st.dictionaries(st.sampled_from(["type", "job_id", "tenant", "reason", "ts"]),
                                               hostile_json, max_size=5)))
def test_parse_control_on_any_object(data):
    _survives_the_wire(_only_validation_errors(parse_control, json.dumps(data, allow_nan=True)), parse_control)


@FUZZ
@given(st.sampled_from(_OPENAI_BODIES), st.one_of(hostile_json, near_request, near_event))
def test_openai_bodies_on_any_object(model, data):
    _only_validation_errors(model.model_validate, data)
    _only_validation_errors(model.model_validate_json, json.dumps(data, allow_nan=True))


@FUZZ
@given(requests)
def test_requests_round_trip(request):
    assert parse_request(encode(request)) == request
    assert parse_request(request.model_dump(mode="json")) == request


@FUZZ
@given(events)
def test_events_round_trip(event):
    assert parse_event(encode(event)) == event
    assert parse_event(event.model_dump(mode="json")) == event


@FUZZ
@given(st.builds(CancelJob, job_id=st.text(max_size=128), tenant=st.text(max_size=128),
                 reason=st.none() | st.text(max_size=512), ts=st.floats(0, 4e9)))
def test_control_round_trip(message):
    assert parse_control(encode(message)) == message


@FUZZ
@given(ids, ids)
def test_every_tenant_and_job_id_names_an_artifact(tenant, job_id):
    assert artifact_key(tenant, job_id, "image-0.png").split("/")[1:3] == [tenant, job_id]
