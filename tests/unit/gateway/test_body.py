"""Hostile bodies found by the fuzz tests: each is a 400 with its code, never an exception."""

from __future__ import annotations

import pytest

from gateway.body import build_request, form_fields, parse_json
from gateway.errors import ApiError
from schemas.enums import ErrorCode


@pytest.mark.parametrize("body, hint", [
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested more than"),
    (b'{"seed": ' + b"9" * 5_000 + b"}", "too many digits"),
], ids=["deep array", "deep object", "5000-digit integer"])
def test_json_that_python_cannot_hold_is_invalid_json(body, hint):
    with pytest.raises(ApiError) as caught:
        parse_json(body)
    assert caught.value.code == ErrorCode.INVALID_JSON and caught.value.status == 400
    assert hint in caught.value.message


def _form(part_headers: bytes, payload: bytes) -> bytes:
    return (b'--x\r\nContent-Disposition: form-data; name="prompt"\r\n' + part_headers + b"\r\n" + payload
            + b"\r\n--x--\r\n")


@pytest.mark.parametrize("body, hint", [
    (_form(b"Content-Type: text/plain; charset=x-nope\r\n", b"hi"), "unknown charset 'x-nope'"),
    (_form(b"", b"\xff\xfe"), "not valid utf-8"),
], ids=["unknown charset", "not utf-8"])
def test_form_fields_that_cannot_be_decoded_are_invalid_requests(body, hint):
    with pytest.raises(ApiError) as caught:
        form_fields(body, "multipart/form-data; boundary=x")
    assert caught.value.code == ErrorCode.INVALID_REQUEST and caught.value.param == "prompt"
    assert hint in caught.value.message


def test_form_fields_still_read_text():
    assert form_fields(_form(b"", b"a cat"), "multipart/form-data; boundary=x") == {"prompt": "a cat"}


def test_a_job_with_nan_in_it_is_a_400_not_an_accepted_job_that_is_lost():
    body = parse_json(b'{"modality": "text", "submitted_at": NaN, "params": {"messages": [{"role": "user",'
                      b' "content": "hi"}]}}')
    with pytest.raises(ApiError) as caught:
        build_request(body, "t-a", None)
    assert caught.value.code == ErrorCode.INVALID_PARAMETER and caught.value.param.endswith("submitted_at")
