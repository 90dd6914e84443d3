"""The text worker (continuous batching over the real SmolLM2 model) behind the real broker."""

from __future__ import annotations

import json

import pytest

from infra.kafka.codec import encode
from infra.kafka.topics import CONTROL, EVENTS_RAW, jobs_topic
from schemas import CancelJob, parse_request
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import serving, job_events, read_topic, skip_backlog
from schemas.enums import Modality
from workers.runner import jobs_group
from workers.text.handler import TextHandler
from infra.models.loader import TextModelSpec
from workers.wiring import job_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOPIC = jobs_topic("text")
GROUP = jobs_group(Modality.TEXT)


@pytest.fixture(scope="module")
async def text_worker(kafka_bootstrap):
    await skip_backlog(kafka_bootstrap, TOPIC, GROUP)
    handler = TextHandler(TextModelSpec(), served_name="smollm2-135m-instruct", max_batch_size=8)
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)) as (runner,):
        yield runner


def chat(job_id: str, content: str, tenant: str = "default", **params):
    return parse_request({"job_id": job_id, "modality": "text", "tenant": tenant,
                          "params": {"messages": [{"role": "user", "content": content}], **params}})


async def submit(producer, request):
    """Send the job; returns where it landed."""
    return await producer.send_and_wait(TOPIC, encode(request), key=request.key.encode())


async def test_tokens_stream_and_completed_carries_text_and_usage(kafka_bootstrap, text_worker, producer):
    await submit(producer, chat("tx-ok", "Name three colours.", max_tokens=12, temperature=0))
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "tx-ok", timeout=120)
    types = [e.type for e in events]
    assert types[0] == "started" and types[-1] == "completed" and "token" in types
    deltas = "".join(e.text for e in events if e.type == "token")
    done = events[-1]
    assert done.text == deltas and deltas.strip()
    assert done.usage.completion_tokens == sum(e.tokens for e in events if e.type == "token")
    assert done.usage.completion_tokens <= 12 and done.usage.prompt_tokens > 5
    assert done.finish_reason.value in ("stop", "length")
    assert done.timings.ttft_s is not None and events[0].model.id


async def test_concurrent_jobs_share_decode_steps_and_match_solo_output(kafka_bootstrap, text_worker, producer):
    await submit(producer, chat("tx-solo", "Say hello.", max_tokens=10, temperature=0))
    solo = await job_events(kafka_bootstrap, EVENTS_RAW, "tx-solo", timeout=120)
    for i in range(4):
        await submit(producer, chat(f"tx-batch-{i}", "Say hello." if i == 0 else f"Count to {i + 2}.",
                                    max_tokens=10, temperature=0))
    results = [await job_events(kafka_bootstrap, EVENTS_RAW, f"tx-batch-{i}", timeout=120) for i in range(4)]
    assert all(r[-1].type == "completed" for r in results)
    assert text_worker.handler.max_running >= 2
    assert results[0][-1].text == solo[-1].text  # batching does not change greedy output


async def test_a_tenants_repeated_prompt_head_comes_from_the_prefix_cache_and_no_other_tenants(
        kafka_bootstrap, text_worker, producer):
    """The same prompt twice from one tenant: the second reports its chat-template head as cached
    tokens (whole 16-token blocks, the last token computed); from another tenant nothing is cached.
    The greedy answers are the same all three times."""
    prompt = "List four rivers of Europe, one per line."
    done = []
    for job_id, tenant in (("tx-pc-a1", "t-pca"), ("tx-pc-a2", "t-pca"), ("tx-pc-b1", "t-pcb")):
        await submit(producer, chat(job_id, prompt, tenant=tenant, max_tokens=8, temperature=0))
        done.append((await job_events(kafka_bootstrap, EVENTS_RAW, job_id, timeout=120))[-1])
    assert all(d.type == "completed" for d in done)
    first, again, other = (d.usage for d in done)
    assert first.cached_tokens == 0 and other.cached_tokens == 0
    assert again.cached_tokens == (again.prompt_tokens - 1) // 16 * 16 > 0
    assert done[0].text == done[1].text == done[2].text


async def test_cancel_mid_stream_ends_with_one_cancelled(kafka_bootstrap, text_worker, producer):
    sent = await submit(producer, chat("tx-cancel", "Write a long story about a dragon.", max_tokens=200, temperature=0))

    def some_tokens(messages):
        return sum(m.key == b"tx-cancel" and json.loads(m.value)["type"] == "token" for m in messages) >= 2

    await read_topic(kafka_bootstrap, EVENTS_RAW, until=some_tokens, timeout=120)
    await text_worker._producer.send_and_wait(CONTROL, encode(CancelJob(job_id="tx-cancel", tenant="t")),
                                              key=b"tx-cancel")
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "tx-cancel", after_commit=(GROUP, sent))
    terminals = [e.type for e in events if e.type in ("completed", "failed", "cancelled")]
    assert terminals == ["cancelled"]
    assert sum(e.tokens for e in events if e.type == "token") < 200


@pytest.mark.parametrize("job_id,params,model,code", [
    ("tx-ctx", {"max_tokens": 9000}, None, "context_length_exceeded"),
    ("tx-model", {"max_tokens": 4}, "gpt-17", "model_not_found"),
])
async def test_requests_the_model_cannot_serve_fail_with_a_code(kafka_bootstrap, text_worker, producer,
                                                                 job_id, params, model, code):
    request = chat(job_id, "hi", **params)
    if model:
        request = request.model_copy(update={"model": model})
    await submit(producer, request)
    events = await job_events(kafka_bootstrap, EVENTS_RAW, job_id, timeout=60)
    assert [e.type for e in events] == ["failed"]
    assert events[0].code.value == code
