"""Request signatures (infra.kafka.signing): what the gateway signs and the workers verify."""

from __future__ import annotations

from infra.kafka.signing import SIGNATURE_HEADER, fingerprint, refusal, signature, signature_headers
from schemas import parse_request


def chat(**overrides):
    body = {"job_id": "j1", "tenant": "t1", "modality": "text",
            "params": {"messages": [{"role": "user", "content": "hi"}]}, **overrides}
    return parse_request(body)


def test_a_signed_request_verifies_and_any_change_to_what_is_signed_does_not():
    headers = signature_headers(b"k", chat())
    assert headers == [(SIGNATURE_HEADER, signature(b"k", chat()).encode())]
    assert refusal(b"k", chat(), headers) is None
    assert refusal("k", chat(), headers) is None  # a str key is its UTF-8 bytes
    for changed in (chat(tenant="t2"), chat(job_id="j2"),
                    chat(params={"messages": [{"role": "user", "content": "other"}]})):
        assert "does not match" in refusal(b"k", changed, headers)
    assert "does not match" in refusal(b"other", chat(), headers)
    assert "not signed" in refusal(b"k", chat(), [("genloom-accepted", b"1")])
    assert "not signed" in refusal(b"k", chat(), None)


def test_without_a_key_nothing_is_signed_or_checked():
    assert signature_headers(None, chat()) == []
    assert refusal(None, chat(), None) is None
    assert refusal(b"", chat(), [(SIGNATURE_HEADER, b"v1=garbage")]) is None


def test_the_fingerprint_ignores_the_job_id_but_not_the_tenant():
    assert fingerprint(chat()) == fingerprint(chat(job_id="other"))
    assert fingerprint(chat()) != fingerprint(chat(tenant="t2"))
