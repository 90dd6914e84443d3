"""Fuzzing the HTTP API: schemathesis cases from the gateway's own /openapi.json (every operation,
valid and invalid data), and hostile raw bodies (deep nesting, huge numbers, lone surrogates, bad
UTF-8, odd content types) at every endpoint that reads one. The bar: no 5xx, no request past its
deadline, and answers that match the schema where one is declared.

Sized by GENLOOM_FUZZ_REQUESTS (see tests/fuzz/settings.py): a few hundred by default (CI), 2000 or
more for an acceptance run.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from infra.models.catalog import MediaCatalog
from infra.models.settings import TextSettings
from tests.fuzz.api_bodies import near_valid, valid_bodies
from tests.fuzz.client import Finding, FuzzLog, send
from tests.fuzz.conftest import FUZZ_TENANTS
from tests.fuzz.settings import API_REQUESTS, SEED
from tests.fuzz.stack import FUZZ_MAX_BODY
from tests.fuzz.strategies import hostile_bytes, hostile_text

pytestmark = [pytest.mark.integration, pytest.mark.fuzz, pytest.mark.timeout(max(300, API_REQUESTS)),
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]

#: the shares of the request budget: schemathesis cases, near-valid bodies, raw hostile bodies
SCHEMA_SHARE, NEAR_VALID_SHARE, RAW_SHARE = 0.5, 0.3, 0.2
#: at most this many rounds over the operations to spend the schemathesis share
_ROUNDS = 4
#: endpoints that read a body, and the content types sent to them
BODY_ENDPOINTS = ["/v1/jobs", "/v1/chat/completions", "/v1/images/generations", "/v1/audio/speech", "/v1/videos"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "multipart/form-data; boundary=x",
                 "multipart/form-data", "text/plain", None]

#: header values an HTTP client can send (ASCII, printable, no surrounding whitespace)
header_values = hostile_text.filter(lambda v: v.isascii() and v.isprintable() and v and v == v.strip())

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
    target = API_REQUESTS * SCHEMA_SHARE
    per_run = max(1, round(target / (2 * len(operations))))
    with requests.Session() as session:
        # small operations run out of cases early: further rounds, each with its own seed, fill the budget
        for round_ in range(_ROUNDS):
            if log.sent >= target:
                break
            for operation in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    _fuzz_operation(session, log, operation, mode, per_run, SEED + round_, fuzz_stack, auth)
    print(log.report())
    assert not log.findings, log.report()
    assert log.sent >= target * 0.5, log.summary()


def _fuzz_operation(session, log: FuzzLog, operation, mode, examples: int, seed_: int, stack, auth) -> None:
    @seed(seed_)
    @settings(max_examples=examples, **_RUN)
    @given(operation.as_strategy(generation_mode=mode))
    def run(case):
        _quiet_webhooks(case, stack.webhook_url)
        kwargs = case.as_transport_kwargs(base_url=stack.url, headers=auth)
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


def test_near_valid_bodies(fuzz_stack, fuzz_keys):
    """Valid bodies for the served models, most with one field broken: they reach admission (and its
    429s), the stand-in worker, the follower and the answer."""
    tenant = FUZZ_TENANTS[1]
    auth = {"Authorization": f"Bearer {fuzz_keys[tenant]}"}
    bodies = valid_bodies(MediaCatalog.from_settings(), TextSettings().served_name, tenant, fuzz_stack.webhook_url)
    cases = st.one_of([st.tuples(st.just(path), near_valid(valid)) for path, valid in bodies.items()])
    log = FuzzLog()

    @seed(SEED)
    @settings(max_examples=max(1, round(API_REQUESTS * NEAR_VALID_SHARE)), **_RUN)
    @given(cases, st.integers(0, 3), st.none() | header_values)
    def run(case, multipart, idempotency_key):
        path, body = case
        headers = dict(auth)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if path == "/v1/videos" and multipart == 0 and isinstance(body, dict):
            files = {str(k): (None, v if isinstance(v, str) else json.dumps(v)) for k, v in body.items()}
            send(session, log, f"POST {path} (form)", method="POST", url=fuzz_stack.url + path, files=files,
                 headers=headers)
        else:
            send(session, log, f"POST {path}", method="POST", url=fuzz_stack.url + path,
                 data=json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass"),
                 headers={**headers, "Content-Type": "application/json"})

    with requests.Session() as session:
        run()
    print(log.report())
    assert not log.findings, log.report()
    assert {200, 202} & set(log.statuses), log.summary()  # some got through to a worker


def test_raw_bodies(fuzz_stack, fuzz_keys):
    log = FuzzLog()
    key = fuzz_keys[FUZZ_TENANTS[1]]
    auth = st.sampled_from([f"Bearer {key}"] * 8 + [None, "Bearer nope", "Basic x", f"bearer  {key} "])
    headers = st.fixed_dictionaries({}, optional={
        "Idempotency-Key": header_values,
        "Content-Length-Hint": st.just("x"),
    })

    @seed(SEED)
    @settings(max_examples=max(1, round(API_REQUESTS * RAW_SHARE)), **_RUN)
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
