"""A cache hit seen through the real gateway with the official OpenAI SDK: gateway (route `streams`)
→ `genloom.requests` → the streams process's preparation chain (privacy, embedding, cache; the cache
serves only this tenant there, tests/conftest.py) → `genloom.events` → the real fan-out → Redis → the client.
The first job misses and is answered by the test playing the worker; the streams process's fill
agent stores its answer; paraphrases of it are then answered from the cache, streamed and not."""

from __future__ import annotations

import asyncio

import openai
import pytest

from infra.client import GenloomClient
from infra.redis import keys
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from schemas.requests import scoped_job_id
from tests.edge_helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"
TENANT = "t-cache"
ANSWER = "The capital of France is Paris."
SOURCE = scoped_job_id(TENANT, "cache-gw-src")  # how the workers, Redis and the cache know the first job


@pytest.fixture
def sdk(gateway_url_b, edge_keys):
    return openai.AsyncOpenAI(base_url=f"{gateway_url_b}/v1", api_key=edge_keys[TENANT], max_retries=0, timeout=90)


async def test_a_paraphrase_is_answered_from_the_cache_like_a_generated_answer(sdk, streams_process, worker, edge_redis,
                                                                                 edge_store, gateway_url_b, edge_keys):
    source = asyncio.create_task(sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital city of France?"}],
        max_tokens=32, temperature=0, extra_headers={"Idempotency-Key": "cache-gw-src"}))

    async def missed():
        assert streams_process.poll() is None, "the streams process exited"
        return await edge_redis.exists(keys.cache_pending(SOURCE))

    await wait_for(missed, timeout=60)  # the stage looked it up, missed and left its marker
    model = ModelInfo(id="HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu", dtype="float32")
    await worker.emit(Started, SOURCE, worker="w1", model=model)
    await worker.emit(TokenDelta, SOURCE, text=ANSWER, tokens=7)
    await worker.emit(Completed, SOURCE, text=ANSWER,
                      usage=Usage(prompt_tokens=12, completion_tokens=7, total_tokens=19))
    first = await source
    assert first.choices[0].message.content == ANSWER and first.usage.completion_tokens == 7
    await wait_for(lambda: _filled(edge_redis), timeout=60)

    stream = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Which city is the capital of France?"}],
        max_tokens=32, temperature=0, stream=True, stream_options={"include_usage": True},
        extra_headers={"Idempotency-Key": "cache-gw-hit-1"})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == 0 and chunks[-1].usage.total_tokens == 0

    whole = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me the capital city of France."}],
        max_tokens=32, temperature=0, extra_headers={"Idempotency-Key": "cache-gw-hit-2"})
    assert whole.choices[0].message.content == ANSWER and whole.usage.completion_tokens == 0

    events = [entry.event for entry in await edge_store.entries(scoped_job_id(TENANT, "cache-gw-hit-2"))]
    started = next(e for e in events if isinstance(e, Started))
    completed = next(e for e in events if isinstance(e, Completed))
    # the tenant's own id of the source job, as every other surface shows it (never the scoped one)
    assert started.cache.source_job == completed.cache.source_job == "cache-gw-src"
    assert 0.85 <= completed.cache.similarity <= 1.0 and started.model == model
    async with GenloomClient(gateway_url_b, edge_keys[TENANT]) as client:  # the job API shows it too
        job = await client.get("cache-gw-hit-2")
    assert job["status"] == "completed" and job["result"]["text"] == ANSWER
    assert job["cache"]["source_job"] == "cache-gw-src" and job["usage"]["completion_tokens"] == 0


async def _filled(redis) -> bool:
    return await redis.exists(keys.cache_pending(SOURCE)) == 0
