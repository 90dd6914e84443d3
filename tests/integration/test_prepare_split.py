"""A preparation stage split out into its own processor: two `python -m streams` processes, the first
running only the privacy stage onto an intermediate topic, the second reading that topic, running
no stage of its own and routing to the workers with one `prepared` event for both."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from infra.kafka.clients import ensure_topics
from infra.kafka.signing import refusal, signature_headers
from infra.kafka.topics import EVENTS, TopicSpec, jobs_topic
from infra.procs import stop_process
from schemas import parse_request
from schemas.requests import scoped_job_id
from tests.conftest import FAST_STREAMS_ENV, PRIVACY_KEY, REQUEST_SIGNING_KEY
from tests.kafka_helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IN, MID = "genloom.split.in", "genloom.split.mid"


@pytest.fixture(scope="module")
def split_processors(kafka_bootstrap, redis_url, tmp_path_factory):
    import asyncio

    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(IN, 2, "job", "GenerationRequest", "test"),
                                                TopicSpec(MID, 2, "job", "GenerationRequest", "test")]))
    logs = tmp_path_factory.mktemp("split")
    common = dict(os.environ, GENLOOM_KAFKA_BOOTSTRAP=kafka_bootstrap, GENLOOM_REDIS_URL=redis_url,
                  GENLOOM_REQUEST_SIGNING_KEY=REQUEST_SIGNING_KEY.decode(), GENLOOM_PRIVACY_KEY=PRIVACY_KEY,
                  GENLOOM_STREAMS_FANOUT="false", **FAST_STREAMS_ENV)
    roles = {
        "privacy": {"GENLOOM_STREAMS_APP_ID": "genloom-split-privacy", "GENLOOM_PREPARE_STAGES": "privacy",
                    "GENLOOM_PREPARE_INPUT": IN, "GENLOOM_PREPARE_OUTPUT": MID},
        "route": {"GENLOOM_STREAMS_APP_ID": "genloom-split-route", "GENLOOM_PREPARE_STAGES": "",
                  "GENLOOM_PREPARE_INPUT": MID, "GENLOOM_PREPARE_OUTPUT": "jobs"},
    }
    procs = []
    for name, env in roles.items():
        with open(logs / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "streams"], env={**common, **env}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    yield procs
    for proc in procs:
        stop_process(proc, timeout=10)


#: the producer's id is qualified by its tenant (the default one) in the first processor
JOB = scoped_job_id("default", "split-1")


def _json(value: bytes) -> dict:
    try:
        data = json.loads(value)
    except ValueError:  # other tests put garbage on the shared topics on purpose
        return {}
    return data if isinstance(data, dict) else {}


def _job(job_id):
    def has(messages):
        return any(_json(m.value).get("job_id") == job_id for m in messages)
    return has


async def test_privacy_split_out_into_its_own_processor(kafka_bootstrap, split_processors, producer):
    body = {"job_id": "split-1", "modality": "text", "params": {"messages": [
        {"role": "user", "content": "Mail ada.lovelace@example.org about card 4111 1111 1111 1111"}]}}
    request = parse_request(body)
    await producer.send_and_wait(IN, json.dumps(body).encode(), key=b"split-1",
                                 headers=signature_headers(REQUEST_SIGNING_KEY, request))
    mid = await read_topic(kafka_bootstrap, MID, until=_job(JOB), timeout=120)
    assert b"ada.lovelace" not in next(m.value for m in mid if JOB.encode() in m.value)
    routed = await read_topic(kafka_bootstrap, jobs_topic("text"), until=_job(JOB), timeout=60)
    msg = next(m for m in routed if _json(m.value).get("job_id") == JOB)
    sent = parse_request(msg.value)
    assert sent.params.messages[0].content == "Mail <EMAIL_1> about card <CARD_1>"
    assert refusal(REQUEST_SIGNING_KEY, sent, msg.headers) is None
    events = await read_topic(kafka_bootstrap, EVENTS, until=lambda ms: any(
        _json(m.value).get("job_id") == JOB and _json(m.value)["type"] == "prepared" for m in ms))
    mine = [_json(m.value) for m in events if _json(m.value).get("job_id") == JOB]
    assert [e["type"] for e in mine] == ["accepted", "prepared"]  # accepted once, by the first processor
    prepared = mine[-1]
    assert prepared["stages"] == ["privacy"] and prepared["redactions"] == {"EMAIL": 1, "CARD": 1}
    assert "privacy" in prepared["stage_ms"]
    assert all(p.poll() is None for p in split_processors)
