"""What the fuzz found, as fixed examples over HTTP: each was a 500 (or an accepted job that was then
lost) and is now a 400 with its code. The fuzz finds them again only by chance; these always run."""

from __future__ import annotations

import httpx
import pytest

from tests.fuzz.conftest import FUZZ_TENANTS
from tests.fuzz.strategies import nested

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

_FORM = "multipart/form-data; boundary=x"


def _part(headers: bytes, payload: bytes) -> bytes:
    return b'--x\r\nContent-Disposition: form-data; name="prompt"\r\n' + headers + b"\r\n" + payload + b"\r\n--x--\r\n"


CASES = [
    # (name, path, content type, body, status, code, message hint)
    ("deep array to jobs", "/v1/jobs", "application/json", nested(50_000), 400, "invalid_json", "nested more than"),
    ("deep array to chat", "/v1/chat/completions", "application/json", b"[" * 60_000 + b"]" * 60_000, 400,
     "invalid_json", "nested more than"),
    ("5000-digit seed to chat", "/v1/chat/completions", "application/json", b'{"seed": ' + b"9" * 5000 + b"}", 400,
     "invalid_json", "too many digits"),
    ("5000-digit number to videos", "/v1/videos", "application/json", b'{"prompt": "x", "fps": ' + b"1" * 5000
     + b"}", 400, "invalid_json", "too many digits"),
    ("form part in an unknown charset", "/v1/videos", _FORM, _part(b"Content-Type: text/plain; charset=x-nope\r\n",
                                                                  b"a cat"), 400, "invalid_request", "unknown charset"),
    ("form part not in utf-8", "/v1/videos", _FORM, _part(b"", b"\xff\xfe"), 400, "invalid_request", "not valid"),
    ("NaN in a job", "/v1/jobs", "application/json",
     b'{"modality": "text", "submitted_at": NaN, "params": {"messages": [{"role": "user", "content": "hi"}]}}',
     400, "invalid_parameter", "finite number"),
    ("Infinity in a job", "/v1/jobs", "application/json",
     b'{"modality": "speech", "submitted_at": 1e999, "params": {"input": "hi"}}', 400, "invalid_parameter",
     "finite number"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_found_by_fuzzing(case, fuzz_stack, fuzz_keys):
    name, path, content_type, body, status, code, hint = case
    headers = {"Authorization": f"Bearer {fuzz_keys[FUZZ_TENANTS[1]]}", "Content-Type": content_type}
    response = httpx.post(fuzz_stack.url + path, content=body, headers=headers, timeout=15)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and hint in error["message"], error


def test_an_image_job_whose_id_has_a_colon_stores_its_image(fuzz_stack, fuzz_keys):
    # the worker (here its stand-in, which stores artifacts the same way) could not name the PNG of a
    # job id with ':' or '@' and failed the finished job: a 500 (generation_error) for a valid request
    headers = {"Authorization": f"Bearer {fuzz_keys[FUZZ_TENANTS[1]]}", "Idempotency-Key": "img:colon@1"}
    with httpx.Client(base_url=fuzz_stack.url, headers=headers, timeout=15) as http:
        response = http.post("/v1/images/generations", json={"prompt": "a cat", "size": "8x8"})
        assert response.status_code == 200, response.text
        image = http.get(response.json()["data"][0]["url"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
