import json

from infra.kafka.signing import refusal
from schemas import ErrorCode, parse_request
from schemas.requests import qualified, scoped_job_id
from streams.routing.logic import Rejected, Routed, route

ARGS = dict(topic="genloom.requests", partition=0, offset=5, key=b"k", max_bytes=10_000, consumer="test")


def test_valid_job_goes_to_its_modality_topic_keyed_by_session():
    value = json.dumps({"job_id": "j1", "session": "s1", "modality": "image",
                        "params": {"prompt": "a cat"}}).encode()
    decision = route(value=value, **ARGS)
    assert isinstance(decision, Routed)
    assert decision.topic == "genloom.jobs.image" and decision.key == b"s1"
    # named by the producer's id, the job is qualified by its tenant (the schema's default) on its way
    routed = json.loads(decision.value)
    assert routed["job_id"] == scoped_job_id("default", "j1") and routed["client_job_id"] == "j1"
    assert decision.request.shown_id == "j1"


def test_a_raw_request_is_qualified_like_the_gateway_does_and_once_only():
    body = {"job_id": "order-1", "tenant": "t1", "modality": "image", "params": {"prompt": "a cat"}}
    decision = route(value=json.dumps(body).encode(), **ARGS)
    by_gateway = qualified(parse_request(body))
    assert decision.request.job_id == by_gateway.job_id != scoped_job_id("t2", "order-1")
    assert decision.key == by_gateway.job_id.encode()  # no session: keyed by the internal id
    again = route(value=decision.value, **ARGS)  # already qualified: left as it is
    assert again.request == decision.request


def test_a_request_whose_job_id_is_not_scoped_by_its_client_id_is_rejected():
    body = {"job_id": scoped_job_id("victim", "order-1"), "client_job_id": "order-1", "tenant": "t1",
            "modality": "image", "params": {"prompt": "a cat"}}
    rejected = route(value=json.dumps(body).encode(), **ARGS)
    assert isinstance(rejected, Rejected) and rejected.code is ErrorCode.INVALID_PARAMETER


def test_invalid_job_is_rejected_with_code_and_job_id():
    value = json.dumps({"job_id": "j2", "modality": "text", "params": {"messages": []}}).encode()
    decision = route(value=value, **ARGS)
    assert isinstance(decision, Rejected)
    assert decision.code is ErrorCode.INVALID_PARAMETER and decision.job_id == "j2"
    assert decision.letter.offset == 5 and decision.letter.topic == "genloom.requests"


def test_garbage_and_empty_and_oversized_never_raise():
    assert route(value=b"\x00\x01garbage", **ARGS).code is ErrorCode.INVALID_JSON
    assert route(value=b"", **ARGS).code is ErrorCode.MALFORMED_MESSAGE
    big = json.dumps({"job_id": "j3", "modality": "text", "params": {"messages": [
        {"role": "user", "content": "x" * 20_000}]}}).encode()
    rejected = route(value=big, **ARGS)
    assert rejected.code is ErrorCode.MESSAGE_TOO_LARGE and rejected.job_id == "j3"


def test_with_a_key_only_signed_requests_are_routed_and_their_signature_goes_on():
    from infra.kafka.signing import SIGNATURE_HEADER, signature_headers
    from schemas import parse_request

    body = {"job_id": "j4", "tenant": "t1", "modality": "image", "params": {"prompt": "a cat"}}
    value = json.dumps(body).encode()
    headers = signature_headers(b"k", parse_request(body))
    routed = route(value=value, headers=[("genloom-accepted", b"1"), *headers], signing_key=b"k", **ARGS)
    # checked as the producer signed it, then signed again as qualified: the workers accept it
    assert isinstance(routed, Routed) and routed.request.client_job_id == "j4"
    assert refusal(b"k", routed.request, routed.headers) is None and routed.headers != headers
    scoped = qualified(parse_request(body))
    signed = signature_headers(b"k", scoped)
    forwarded = route(value=scoped.model_dump_json().encode(), headers=signed, signing_key=b"k", **ARGS)
    assert forwarded.headers == signed  # a qualified request keeps its own signature
    for given in ([], signature_headers(b"other key", parse_request(body)),
                  signature_headers(b"k", parse_request({**body, "tenant": "t2"}))):
        rejected = route(value=value, headers=given, signing_key=b"k", **ARGS)
        assert rejected.code is ErrorCode.INVALID_SIGNATURE and rejected.job_id == "j4"
        assert rejected.letter.code is ErrorCode.INVALID_SIGNATURE
    unkeyed = route(value=value, **ARGS)
    assert isinstance(unkeyed, Routed) and unkeyed.headers == []
    assert route(value=value, headers=headers, **ARGS).headers == [(SIGNATURE_HEADER, headers[0][1])]
