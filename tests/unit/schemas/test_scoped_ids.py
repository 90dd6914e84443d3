"""Job ids scoped by tenant: the internal id, qualification, and events shown with the tenant's id."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import parse_request
from schemas.events import Accepted, TokenDelta, as_shown_to, parse_event
from schemas.requests import is_valid_id, qualified, scoped_job_id

TEXT = {"modality": "text", "params": {"messages": [{"role": "user", "content": "hi"}]}}


def test_the_internal_id_is_per_tenant_fixed_length_and_a_valid_id():
    a, b = scoped_job_id("t-a", "order-1"), scoped_job_id("t-b", "order-1")
    assert a != b and a == scoped_job_id("t-a", "order-1")
    assert len(a) == len(scoped_job_id("t", "x" * 128)) == 33 and is_valid_id(a)
    # the separator keeps ("t", "a:b") and ("t:a", "b")-like pairs apart
    assert scoped_job_id("ab", "c") != scoped_job_id("a", "bc")


def test_qualifying_keeps_the_tenants_id_and_happens_once():
    raw = parse_request({**TEXT, "job_id": "order-1", "tenant": "t-a"})
    scoped = qualified(raw)
    assert scoped.job_id == scoped_job_id("t-a", "order-1") and scoped.client_job_id == "order-1"
    assert scoped.shown_id == raw.shown_id == "order-1"
    assert qualified(scoped) is scoped
    # it survives the wire as it is
    assert qualified(parse_request(scoped.model_dump_json())) == scoped


def test_a_client_id_must_name_the_job_id_of_its_own_tenant():
    with pytest.raises(ValidationError, match="scoped_job_id"):
        parse_request({**TEXT, "tenant": "t-a", "client_job_id": "order-1",
                       "job_id": scoped_job_id("t-b", "order-1")})


def test_events_are_shown_with_the_tenants_id_everywhere_they_name_the_job():
    internal = scoped_job_id("t-a", "order-1")
    token = TokenDelta(job_id=internal, seq=1, source="worker", text=f"see {internal}", tokens=2)
    shown = parse_event(as_shown_to(token.model_dump_json().encode(), internal, "order-1"))
    assert shown.job_id == "order-1" and shown.text == "see order-1"
    data = token.model_dump_json().encode()
    assert as_shown_to(data, internal, None) is data and as_shown_to(data, internal, internal) is data


def test_accepted_carries_the_tenants_id():
    accepted = Accepted(job_id=scoped_job_id("t", "a"), seq=0, source="gateway", tenant="t", client_job_id="a",
                        modality="text")
    assert parse_event(accepted.model_dump_json()).client_job_id == "a"


def test_user_ids_are_scoped_by_tenant_hide_the_callers_id_and_scope_once():
    from schemas.requests import is_scoped_user, scoped_user_id

    a, b = scoped_user_id("t-a", "alice@example.com"), scoped_user_id("t-b", "alice@example.com")
    assert a != b and a == scoped_user_id("t-a", "alice@example.com") and is_scoped_user(a)
    assert "alice" not in a and is_valid_id(a)
    assert scoped_user_id("t-a", a) == a  # idempotent
    raw = parse_request({**TEXT, "job_id": "order-1", "tenant": "t-a", "user": "alice"})
    scoped = qualified(raw)
    assert scoped.user == scoped_user_id("t-a", "alice")
    assert qualified(scoped) is scoped
    # a request without a user stays without one
    assert qualified(parse_request({**TEXT, "tenant": "t-a"})).user is None
