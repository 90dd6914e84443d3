"""With a signing key the runner runs only requests signed for the tenant they claim."""

from __future__ import annotations

from infra.kafka.codec import encode
from infra.kafka.signing import signature_headers
from schemas import parse_request
from tests.kafka_doubles import MemoryLog
from tests.unit.workers.test_runner import TOPIC, EchoHandler, events, make_runner


def chat(job_id: str, tenant: str):
    return parse_request({"job_id": job_id, "tenant": tenant, "modality": "text",
                          "params": {"messages": [{"role": "user", "content": "hi"}]}})


async def test_unsigned_and_forged_jobs_fail_with_invalid_signature_and_do_not_run():
    log, handler = MemoryLog(), EchoHandler()
    log.append(TOPIC, encode(chat("unsigned", "t1")), key=b"unsigned")
    log.append(TOPIC, encode(chat("forged", "victim")), key=b"forged",
               headers=signature_headers(b"k", chat("forged", "attacker")))
    log.append(TOPIC, encode(chat("signed", "t1")), key=b"signed", headers=signature_headers(b"k", chat("signed", "t1")))
    runner, jobs = make_runner(log, handler, signing_key=b"k")
    await runner.start()
    await runner.run(burst=True)
    for job_id in ("unsigned", "forged"):
        assert [(e.type, e.code.value) for e in events(log, job_id)] == [("failed", "invalid_signature")]
    assert [e.type for e in events(log, "signed")] == ["started", "token", "completed"]
    assert handler.ran == ["signed"] and sum(jobs.committed.values()) == 3
    await runner.stop()


async def test_without_a_key_an_unsigned_job_runs():
    log, handler = MemoryLog(), EchoHandler()
    log.append(TOPIC, encode(chat("plain", "t1")), key=b"plain")
    runner, _ = make_runner(log, handler)
    await runner.start()
    await runner.run(burst=True)
    assert handler.ran == ["plain"]
    await runner.stop()
