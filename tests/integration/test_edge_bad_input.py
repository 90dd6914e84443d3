"""Every bad input gets its own 4xx and stable code, says what to fix, and nothing reaches Kafka."""

from __future__ import annotations

import httpx
import pytest

from infra.kafka.topics import EVENTS, REQUESTS, jobs_topic
from schemas.enums import Modality
from tests.edge_helpers import read_until_idle, values

pytestmark = pytest.mark.integration

MSG = [{"role": "user", "content": "hi"}]


def _text(**params) -> dict:
    return {"modality": "text", "params": {"messages": MSG, **params}}


# (name, method, path, headers (besides auth), body (dict → json, bytes → raw), status, code, param, hint)
CASES = [
    ("unknown modality", "POST", "/v1/jobs", {}, {"modality": "smell", "params": {}}, 400,
     "unknown_modality", "modality", "use one of text, speech, image, video"),
    ("missing modality", "POST", "/v1/jobs", {}, {"params": {}}, 400, "unknown_modality", "modality", "missing"),
    ("wrong type", "POST", "/v1/jobs", {}, _text(max_tokens="lots"), 400, "invalid_request",
     "params.max_tokens", "integer"),
    ("out of range", "POST", "/v1/jobs", {}, _text(temperature=5), 400, "invalid_parameter",
     "params.temperature", "less than or equal to 2"),
    ("image size", "POST", "/v1/jobs", {}, {"modality": "image", "params": {"prompt": "x", "width": 100}}, 400,
     "invalid_parameter", "params", "use 96 or 104"),
    ("oversized prompt", "POST", "/v1/jobs", {}, {"modality": "image", "params": {"prompt": "x" * 5000}}, 413,
     "payload_too_large", "params.prompt", "at most 4000"),
    ("body too large", "POST", "/v1/jobs", {}, _text(stop=["x" * 300_000]), 413, "payload_too_large", None,
     "the limit is 262144 bytes"),
    ("malformed json", "POST", "/v1/jobs", {"Content-Type": "application/json"}, b'{"modality": "text",', 400,
     "invalid_json", None, "not valid JSON"),
    ("not an object", "POST", "/v1/jobs", {"Content-Type": "application/json"}, b"[1, 2]", 400,
     "invalid_request", None, "JSON object"),
    ("wrong content type", "POST", "/v1/jobs", {"Content-Type": "text/plain"}, b'{"modality": "text"}', 415,
     "unsupported_media_type", "Content-Type", "application/json"),
    ("other tenant in body", "POST", "/v1/jobs", {}, {**_text(), "tenant": "t-a"}, 400, "invalid_request",
     "tenant", "omit it"),
    ("bad idempotency key", "POST", "/v1/jobs", {"Idempotency-Key": "no spaces allowed"}, _text(), 400,
     "invalid_parameter", "Idempotency-Key", "letters, digits"),
    ("unknown job", "GET", "/v1/jobs/job_nope", {}, None, 404, "not_found", None, "job_nope"),
    ("unknown job cancel", "POST", "/v1/jobs/job_nope/cancel", {}, None, 404, "not_found", None, "job_nope"),
    ("unknown job events", "GET", "/v1/jobs/job_nope/events", {}, None, 404, "not_found", None, "job_nope"),
    ("bad cursor", "GET", "/v1/jobs/job_nope/events", {"Last-Event-ID": "abc"}, None, 400, "invalid_parameter",
     "Last-Event-ID", "integer"),
    ("unknown route", "GET", "/v1/nothing", {}, None, 404, "not_found", None, "/openapi.json"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_its_code(case, gateway_url, edge_keys):
    name, method, path, headers, body, status, code, param, hint = case
    headers = {"Authorization": f"Bearer {edge_keys['t-bad']}", **headers}
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body} if body is not None else {}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        response = await http.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == param
    assert hint in error["message"], error["message"]


async def test_streamed_body_over_the_limit_is_413_without_content_length(gateway_url, edge_keys):
    async def chunks():
        for _ in range(64):
            yield b" " * 8192  # 512 KiB of whitespace, chunked: no Content-Length to check up front

    headers = {"Authorization": f"Bearer {edge_keys['t-bad']}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        response = await http.post("/v1/jobs", headers=headers, content=chunks())
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic dXNlcjpwYXNz", "Bearer"])
async def test_missing_or_bad_api_key_is_401(auth, gateway_url):
    headers = {"Authorization": auth} if auth else {}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        response = await http.post("/v1/jobs", headers=headers, json=_text())
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_nothing_from_bad_input_reached_kafka(gateway_url, kafka_bootstrap):
    # runs after the cases above (file order): the bad tenant never appears where jobs go (the
    # gateway's route, the routing agent's input) nor among the events
    for topics in ((REQUESTS, *(jobs_topic(m) for m in Modality)), (EVENTS,)):
        seen = []
        for topic in topics:
            seen += values(await read_until_idle(kafka_bootstrap, topic, idle_s=1.0))
        assert seen, f"{topics} are readable"
        assert not [v for v in seen if v.get("tenant") == "t-bad"], topics


async def test_health_and_openapi(gateway_url):
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        spec = (await http.get("/openapi.json")).json()
    assert "/v1/jobs/{job_id}/events" in spec["paths"]
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/GenerationRequest"}
    assert "TextRequest" in spec["components"]["schemas"]
