"""The whole text path with the official OpenAI SDK: gateway → Kafka → text worker (real SmolLM2,
continuous batching, the engine in its own process as `python -m workers text` runs it) →
moderation → fan-out → Redis → SSE."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from infra.kafka.topics import jobs_topic
from infra.redis.jobstore import JobStore
from schemas.events import TokenDelta
from schemas.requests import scoped_job_id
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import serving, skip_backlog
from workers.text.handler import TextHandler
from infra.models.loader import TextModelSpec
from workers.wiring import job_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
async def text_pipeline(kafka_bootstrap, gateway_url, edge_keys):
    """A text worker beside the edge fixtures' gateway, streams process and moderation gate."""
    await skip_backlog(kafka_bootstrap, jobs_topic("text"), "genloom-workers-text")
    handler = TextHandler(TextModelSpec(), served_name=MODEL, max_batch_size=8, engine_process=True,
                          torch_threads=1)
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)):
        yield handler


@pytest.fixture
def sdk(gateway_url, edge_keys):
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=edge_keys["t-flow"], max_retries=0,
                                timeout=120)
    return client


async def test_models_lists_the_served_model(sdk, text_pipeline):
    models = await sdk.models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_sdk_streams_a_chat_completion_with_usage(sdk, text_pipeline):
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=12, temperature=0,
        stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text.strip() and finish in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


async def test_non_streamed_completion_matches_streamed_greedy_text(sdk, text_pipeline):
    messages = [{"role": "user", "content": "Say hi."}]
    whole = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    stream = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0,
                                               stream=True)
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content == streamed
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


@pytest.mark.parametrize("kwargs,code", [
    ({"model": "gpt-none", "messages": [{"role": "user", "content": "x"}]}, "unknown_model"),
    ({"model": MODEL, "messages": []}, "invalid_parameter"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 100_000},
     "context_length_exceeded"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "word " * 9000}], "max_tokens": 8},
     "context_length_exceeded"),
    ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "invalid_parameter"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 2}, "invalid_parameter"),
])
async def test_bad_chat_requests_are_400_before_queueing(sdk, text_pipeline, kwargs, code):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.chat.completions.create(**kwargs)
    assert info.value.status_code == 400
    assert info.value.body["code"] == code


async def test_closing_the_stream_aborts_generation(sdk, text_pipeline, edge_redis):
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell a very long story about the sea."}],
        max_tokens=300, temperature=0, stream=True)
    received = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 3:
                break
    job_id = scoped_job_id("t-flow", chunk.id.removeprefix("chatcmpl-"))  # as the worker knows it
    await stream.close()
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        record = await JobStore(edge_redis).load(job_id)
        status = record.status if record else None
        if status in ("cancelled", "completed"):
            break
        await asyncio.sleep(0.1)
    assert status == "cancelled"
    generated = await _generated_tokens(edge_redis, job_id)
    # the worker stops at the next decode step after the cancel reaches it
    assert received <= generated < 300


async def _generated_tokens(redis, job_id: str) -> int:
    return sum(e.event.tokens for e in await JobStore(redis).entries(job_id) if isinstance(e.event, TokenDelta))
