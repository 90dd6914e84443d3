"""The gateway's pure parts: keys, body checks, request building, terminal errors, SSE framing, cursors."""

from __future__ import annotations

import pytest

from gateway import lifecycle
from gateway.auth import ApiKeys, InvalidKeySpec, authenticate, bearer_token, generate_key, parse_pairs
from gateway.body import build_request, check_content_type, check_declared_length, parse_json
from infra.kafka.signing import fingerprint
from gateway.errors import STATUS, ApiError
from gateway.follow import failure, parse_cursor
from gateway.sse import error_frame, frame
from infra.client import SseParser
from infra.kafka.topics import ACCEPTED_HEADER
from infra.redis.jobstore import Entry
from schemas.enums import ErrorCode, EventSource, EventType
from schemas.events import Cancelled, Failed

TEXT = {"modality": "text", "params": {"messages": [{"role": "user", "content": "hi"}]}}


def test_api_keys_map_to_tenants_and_are_stored_hashed(tmp_path):
    keys = ApiKeys(parse_pairs("k1:tenantA, k2:tenantB"))
    assert keys.tenant_for("k1") == "tenantA" and keys.tenant_for("k2") == "tenantB"
    assert keys.tenant_for("k3") is None and keys.tenant_for("") is None
    assert all("k1" not in repr(entry) for entry in keys._entries)
    path = tmp_path / "keys"
    path.write_text("# dev keys\nk9:tenantC\n\n")
    both = ApiKeys.from_settings("k1:tenantA", path)
    assert len(both) == 2 and both.tenant_for("k9") == "tenantC"
    with pytest.raises(InvalidKeySpec):
        parse_pairs("no-colon")
    with pytest.raises(InvalidKeySpec):
        parse_pairs("k:bad tenant")


def test_generated_keys_are_unique_and_prefixed():
    a, b = generate_key(), generate_key()
    assert a != b and a.startswith("glk_") and len(a) > 40


def test_bearer_and_authenticate():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer") is None
    keys = ApiKeys([("abc", "t")])
    assert authenticate(keys, "Bearer abc") == "t"
    with pytest.raises(ApiError) as info:
        authenticate(keys, "Bearer nope")
    assert info.value.code == ErrorCode.UNAUTHORIZED and info.value.status == 401


def test_body_checks():
    check_content_type("application/json; charset=utf-8")
    for bad in (None, "text/plain", "application/jsonx"):
        with pytest.raises(ApiError) as info:
            check_content_type(bad)
        assert info.value.status == 415
    with pytest.raises(ApiError) as info:
        check_declared_length("2048", 1024)
    assert info.value.code == ErrorCode.PAYLOAD_TOO_LARGE and info.value.status == 413
    check_declared_length("1024", 1024)
    with pytest.raises(ApiError) as info:
        parse_json(b'{"a": ')
    assert info.value.code == ErrorCode.INVALID_JSON and "line 1" in info.value.message


def test_tenant_comes_from_the_key():
    request = build_request(dict(TEXT), "tenantA", None)
    assert request.tenant == "tenantA"
    assert build_request({**TEXT, "tenant": "tenantA"}, "tenantA", None).tenant == "tenantA"
    with pytest.raises(ApiError) as info:
        build_request({**TEXT, "tenant": "tenantB"}, "tenantA", None)
    assert info.value.param == "tenant"


def test_idempotency_key_header_and_body_must_agree():
    assert build_request(dict(TEXT), "t", "abc-1").job_id == "abc-1"
    assert build_request({**TEXT, "job_id": "abc-1"}, "t", "abc-1").job_id == "abc-1"
    with pytest.raises(ApiError) as info:
        build_request({**TEXT, "job_id": "abc-2"}, "t", "abc-1")
    assert info.value.code == ErrorCode.INVALID_REQUEST and info.value.param == "job_id"


def test_fingerprint_ignores_submission_time_only():
    a = build_request({**TEXT, "job_id": "j1"}, "t", None)
    b = build_request({**TEXT, "job_id": "j1"}, "t", None)
    assert fingerprint(a) == fingerprint(b)
    c = build_request({**TEXT, "job_id": "j1", "priority": 1}, "t", None)
    assert fingerprint(c) != fingerprint(a)


def test_every_error_code_has_one_status():
    assert set(STATUS) <= set(ErrorCode)
    assert STATUS[ErrorCode.RATE_LIMITED] == 429 and STATUS[ErrorCode.IDEMPOTENCY_CONFLICT] == 409
    assert STATUS[ErrorCode.CANCELLED] == 409 and STATUS[ErrorCode.CLIENT_DISCONNECTED] == 499


def test_terminal_events_become_errors_with_their_own_codes():
    failed = failure(Failed(job_id="j", seq=3, source=EventSource.WORKER, code="generation_error", message="oom"))
    assert failed.code == ErrorCode.GENERATION_ERROR and failed.message == "oom" and failed.status == 500
    cancelled = failure(Cancelled(job_id="j", seq=1, source=EventSource.GATEWAY, reason="changed my mind"))
    assert cancelled.code == ErrorCode.CANCELLED and cancelled.status == 409 and "changed my mind" in cancelled.message


def test_sse_frames_parse_back():
    parser = SseParser()
    # the stored bytes travel as they are, unparsed
    raw = frame(Entry(12, EventType.TOKEN, b'{"a":\n1}')) + b": keep-alive\n\n" + error_frame(ErrorCode.REPLAY_EXPIRED, "old")
    items = [item for line in raw.decode().split("\n") if (item := parser.feed(line))]
    assert items[0] == ("12", "token", '{"a":\n1}')
    assert items[1][1] == "error" and '"replay_expired"' in items[1][2]


def test_cursor_parsing():
    assert parse_cursor(None) is None and parse_cursor("") is None and parse_cursor(" 7 ") == 7
    for bad in ("x", "-1", "1.5"):
        with pytest.raises(ValueError):
            parse_cursor(bad)


@pytest.mark.parametrize("route_direct", [True, False])
def test_admitted_jobs_go_to_the_workers_or_through_routing(route_direct):
    service = lifecycle.JobService(None, None, max_inflight=1, retry_after_s=1, publish_timeout_s=1,
                                   route_direct=lambda tenant: route_direct)
    image = build_request({"modality": "image", "params": {"prompt": "a cat"}}, "t", None)
    topic, headers = service.destination(image)
    if route_direct:
        assert (topic, headers) == ("genloom.jobs.image", None)
    else:
        assert topic == "genloom.requests" and headers == [(ACCEPTED_HEADER, b"1")]


@pytest.mark.parametrize("route_direct", [True, False])
def test_with_a_signing_key_every_published_request_is_signed(route_direct):
    from infra.kafka.signing import refusal

    service = lifecycle.JobService(None, None, max_inflight=1, retry_after_s=1, publish_timeout_s=1,
                                   route_direct=lambda tenant: route_direct, signing_key=b"k")
    image = build_request({"modality": "image", "params": {"prompt": "a cat"}}, "t", None)
    _, headers = service.destination(image)
    assert refusal(b"k", image, headers) is None
    assert ((ACCEPTED_HEADER, b"1") in headers) is not route_direct


def test_the_body_cannot_choose_the_internal_id():
    with pytest.raises(ApiError) as info:
        build_request({**TEXT, "job_id": "a", "client_job_id": "a"}, "t", None)
    assert info.value.code == ErrorCode.INVALID_REQUEST and info.value.param == "client_job_id"


def test_artifact_keys_are_shown_by_the_tenants_id_and_stored_by_the_internal_one():
    from gateway.artifacts import key_of, stored_key
    from infra.blob import InvalidBlobKey
    from schemas.requests import scoped_job_id

    shown = key_of("file:///data/artifacts/t-a/jabc/image-0.png", "t-a", "order-1")
    assert shown == "artifacts/t-a/order-1/image-0.png"
    assert stored_key(shown) == f"artifacts/t-a/{scoped_job_id('t-a', 'order-1')}/image-0.png"
    # the same shown id under another tenant reaches that tenant's job, never this one's
    assert stored_key("artifacts/t-b/order-1/image-0.png") != stored_key(shown)
    for bad in ("artifacts/t-a/../t-b/x/y", "artifacts/t-a/order-1", "other/t-a/order-1/x.png",
                "artifacts/t-a/order 1/x.png"):
        with pytest.raises(InvalidBlobKey):
            stored_key(bad)


def test_only_tenants_with_every_stage_off_skip_the_preparation_stages():
    from infra.settings.streams import PrepareSettings

    prepare = PrepareSettings(stages="privacy", off_tenants="raw-tenant, other")
    service = lifecycle.JobService(None, None, max_inflight=1, retry_after_s=1, publish_timeout_s=1,
                                   route_direct=prepare.all_off)
    on = build_request({"modality": "image", "params": {"prompt": "a cat"}}, "t", None)
    off = build_request({"modality": "image", "params": {"prompt": "a cat"}}, "raw-tenant", None)
    assert service.destination(on)[0] == "genloom.requests"
    assert service.destination(off)[0] == "genloom.jobs.image"
    assert PrepareSettings(stages="").all_off("t")


def test_a_callers_user_id_travels_only_as_its_tenant_scoped_id():
    from schemas.requests import scoped_user_id

    request = build_request({**TEXT, "user": "alice@example.com", "session": "s-1"}, "tA", None)
    assert request.user == scoped_user_id("tA", "alice@example.com") and request.session == "s-1"
    assert "alice" not in request.model_dump_json()
    # free text is fine (it is hashed), an empty or huge one is a clear 400
    assert build_request({**TEXT, "user": "Alice Smith (ops)"}, "tA", None).user.startswith("u:")
    for bad in ("", "   ", "x" * 257, 42):
        with pytest.raises(ApiError) as err:
            build_request({**TEXT, "user": bad}, "tA", None)
        assert err.value.param == "user"
