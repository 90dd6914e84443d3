"""Fuzzing the HTTP API: schemathesis cases from the gateway's own /openapi.json (every operation,
valid and invalid data), and hostile raw bodies (deep nesting, huge numbers, lone surrogates, bad
UTF-8, odd content types) at every endpoint that reads one. The bar: no 5xx, no request past its
deadline, and answers that match the schema where one is declared.

Sized by GENLOOM_FUZZ_REQUESTS (see tests/fuzz/settings.py): a few hundred by default (CI), 2000 or
more for an acceptance run.
"""

from __future__ import annotations

import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzz.client import Finding, FuzzLog, send
from tests.fuzz.conftest import FUZZ_TENANTS
from tests.fuzz.settings import API_REQUESTS, SEED
from tests.fuzz.stack import FUZZ_MAX_BODY
from tests.fuzz.strategies import hostile_bytes, hostile_text

pytestmark = [pytest.mark.integration, pytest.mark.fuzz, pytest.mark.timeout(max(300, API_REQUESTS))]

#: the share of the request budget that goes to schemathesis; the rest is raw bodies
SCHEMA_SHARE = 0.75
#: endpoints that read a body, and the content types sent to them
BODY_ENDPOINTS = ["/v1/jobs", "/v1/chat/completions", "/v1/images/generations", "/v1/audio/speech", "/v1/videos"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "multipart/form-data; boundary=x",
                 "multipart/form-data", "text/plain", None]

_RUN = dict(deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck))


def _quiet_webhooks(case, webhook_url: str) -> None:
    """Point any generated webhook at the fuzz receiver: the fan-out really delivers them."""
    hook = case.body.get("webhook") if isinstance(case.body, dict) else None
    if isinstance(hook, dict) and isinstance(hook.get("url"), str) and re.match(r"^https?://", hook["url"]):
        case.body = {**case.body, "webhook": {**hook, "url": webhook_url}}


def test_openapi_operations(fuzz_stack, fuzz_keys):
    schema = schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14, [op.label for op in operations]
    log = FuzzLog()
    auth = {"Authorization": f"Bearer {fuzz_keys[FUZZ_TENANTS[0]]}"}
    per_run = max(1, round(API_REQUESTS * SCHEMA_SHARE / (2 * len(operations))))
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @seed(SEED)
                @settings(max_examples=per_run, **_RUN)
                @given(operation.as_strategy(generation_mode=mode))
                def run(case):
                    _quiet_webhooks(case, fuzz_stack.webhook_url)
                    kwargs = case.as_transport_kwargs(base_url=fuzz_stack.url, headers=auth)
                    kwargs.pop("cookies", None)
                    response = send(session, log, operation.label, **kwargs)
                    if response is None:
                        return
                    try:
                        case.validate_response(response, checks=[response_schema_conformance])
                    except Exception as exc:  # a FailureGroup: the answer contradicts the schema
                        log.findings.append(Finding("schema", operation.label, f"{response.status_code} {exc}"))

                try:
                    run()
                except Unsatisfiable:  # an operation with nothing to negate (GET /healthz)
                    pass
    print(log.report())
    assert not log.findings, log.report()
    assert log.sent >= API_REQUESTS * SCHEMA_SHARE * 0.5, log.summary()


def test_raw_bodies(fuzz_stack, fuzz_keys):
    log = FuzzLog()
    key = fuzz_keys[FUZZ_TENANTS[1]]
    auth = st.sampled_from([f"Bearer {key}"] * 8 + [None, "Bearer nope", "Basic x", f"bearer  {key} "])
    headers = st.fixed_dictionaries({}, optional={
        "Idempotency-Key": hostile_text.filter(lambda v: v.isascii() and v.isprintable()),
        "Content-Length-Hint": st.just("x"),
    })

    @seed(SEED)
    @settings(max_examples=max(1, round(API_REQUESTS * (1 - SCHEMA_SHARE))), **_RUN)
    @given(st.sampled_from(BODY_ENDPOINTS), hostile_bytes, st.sampled_from(CONTENT_TYPES), auth, headers)
    def run(path, body, content_type, authorization, extra):
        sent = dict(extra)
        if content_type is not None:
            sent["Content-Type"] = content_type
        if authorization is not None:
            sent["Authorization"] = authorization
        send(session, log, f"POST {path}", method="POST", url=fuzz_stack.url + path, data=body[:FUZZ_MAX_BODY],
             headers=sent)

    with requests.Session() as session:
        run()
    print(log.report())
    assert not log.findings, log.report()
