import json

import pytest
from pydantic import ValidationError

from schemas import ErrorCode, Modality, TextRequest, parse_request
from schemas.errors import describe_validation_error


def text_job(**params):
    base = {"messages": [{"role": "user", "content": "hello"}]}
    base.update(params)
    return {"job_id": "job-1", "modality": "text", "params": base}


def code_of(data) -> tuple[ErrorCode, str]:
    with pytest.raises(ValidationError) as info:
        parse_request(data)
    return describe_validation_error(info.value)


def test_text_job_wire_shape_round_trips():
    request = parse_request(json.dumps(text_job(max_tokens=64)).encode())
    assert isinstance(request, TextRequest)
    assert request.modality is Modality.TEXT
    assert request.params.max_tokens == 64
    wire = json.loads(request.model_dump_json())
    assert wire["modality"] == "text" and wire["params"]["messages"][0]["content"] == "hello"
    assert parse_request(request.model_dump_json()) == request


@pytest.mark.parametrize(
    "modality,params",
    [
        ("speech", {"input": "Hi there.", "voice": "joe", "format": "pcm", "speed": 1.5}),
        ("image", {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "scheduler": "ddim"}),
        ("video", {"prompt": "a dog", "frames": 8, "fps": 8, "width": 64, "height": 64}),
    ],
)
def test_each_modality_parses_its_params(modality, params):
    request = parse_request({"modality": modality, "params": params})
    assert request.modality.value == modality
    assert request.job_id.startswith("job_")


def test_job_ids_are_unique_and_key_defaults_to_job():
    a = parse_request(text_job() | {"job_id": None} if False else {"modality": "text", "params": text_job()["params"]})
    b = parse_request({"modality": "text", "params": text_job()["params"]})
    assert a.job_id != b.job_id
    assert a.key == a.job_id
    assert parse_request(text_job() | {"session": "s-9"}).key == "s-9"


def test_unknown_modality_has_its_own_code():
    code, message = code_of({"modality": "smell", "params": {}})
    assert code is ErrorCode.UNKNOWN_MODALITY
    assert "smell" in message and "text, speech, image, video" in message


def test_out_of_range_parameter_names_the_field():
    code, message = code_of(text_job(max_tokens=0))
    assert code is ErrorCode.INVALID_PARAMETER
    assert "params.max_tokens" in message


def test_image_size_must_be_divisible_by_eight():
    code, message = code_of({"modality": "image", "params": {"prompt": "x", "width": 100}})
    assert code is ErrorCode.INVALID_PARAMETER
    assert "width=100" in message and "96 or 104" in message


def test_oversized_speech_input_is_payload_too_large():
    code, _ = code_of({"modality": "speech", "params": {"input": "a" * 5000}})
    assert code is ErrorCode.PAYLOAD_TOO_LARGE


def test_malformed_json_is_invalid_json():
    code, _ = code_of(b'{"modality": ')
    assert code is ErrorCode.INVALID_JSON


def test_unknown_fields_and_roles_are_rejected():
    code, message = code_of(text_job() | {"colour": "red"})
    assert code is ErrorCode.INVALID_REQUEST and "colour" in message
    code, message = code_of(text_job(messages=[{"role": "robot", "content": "x"}]))
    assert code is ErrorCode.INVALID_PARAMETER and "role" in message


def test_all_blank_messages_are_rejected():
    code, message = code_of(text_job(messages=[{"role": "user", "content": "   "}]))
    assert "at least one message with text" in message


def test_a_raw_prompt_is_one_user_message():
    assert parse_request(text_job(raw=True)).params.raw is True
    for messages in ([{"role": "system", "content": "x"}],
                     [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]):
        code, message = code_of(text_job(messages=messages, raw=True))
        assert code is ErrorCode.INVALID_PARAMETER and "one user message" in message


def test_stop_accepts_a_single_string():
    request = parse_request(text_job(stop="END"))
    assert request.params.stop == ["END"]


def test_requests_are_frozen():
    request = parse_request(text_job())
    with pytest.raises(ValidationError):
        request.tenant = "other"


def test_bad_job_id_is_rejected():
    code, message = code_of(text_job() | {"job_id": "has spaces"})
    assert "job_id" in message


@pytest.mark.parametrize("events", [["token"], ["completed", "audio"], ["started"], []])
def test_webhooks_take_only_terminal_and_progress_events(events):
    data = {**text_job(), "webhook": {"url": "https://hooks.example.com/h", "events": events}}
    with pytest.raises(ValidationError) as info:
        parse_request(data)
    code, message = describe_validation_error(info.value)
    assert code is ErrorCode.INVALID_PARAMETER and "webhook.events" in message
    ok = parse_request({**text_job(), "webhook": {"url": "https://h.example.com/", "events": ["progress", "failed"]}})
    assert ok.webhook.events == ["progress", "failed"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_not_lost_on_the_wire(value):
    # JSON writes NaN and infinities as null, which the worker refused: the job was accepted, then lost
    code, message = code_of({**text_job(), "submitted_at": value})
    assert code == ErrorCode.INVALID_PARAMETER and "submitted_at: Input should be a finite number" in message
    code, _ = code_of(b'{"modality": "text", "submitted_at": NaN, "params": {"messages": [{"role": "user",'
                      b' "content": "x"}]}}')
    assert code == ErrorCode.INVALID_PARAMETER
