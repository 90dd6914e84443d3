"""The whole text path with the official OpenAI SDK: gateway → Kafka → text worker (real SmolLM2,
continuous batching, the engine in its own process as `python -m workers text` runs it) →
moderation → fan-out → Redis → SSE."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.redis.jobstore import JobStore
from schemas.events import TokenDelta
from schemas.requests import scoped_job_id
from infra.settings import TracingSettings
from infra.tracing import setup_tracing
from tests.conftest import TRACE_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"


async def test_models_lists_the_served_model(sdk, text_pipeline):
    models = await sdk.models.list()
    assert [m.id for m in models.data] == [MODEL, "sentence-transformers/all-MiniLM-L6-v2"]  # + /v1/embeddings'


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


async def test_legacy_completions_continue_the_raw_prompt_streamed_and_whole(sdk, text_pipeline):
    """`/v1/completions`: the prompt is continued as it is (no chat template), so its token count is the
    tokenizer's own count of the text; the streamed text equals the whole answer's."""
    prompt = "The capital of France is"
    whole = await sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0)
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    assert whole.choices[0].finish_reason in ("stop", "length") and whole.choices[0].text.strip()
    expected_prompt = len(text_pipeline.loaded.format_text(prompt))
    assert whole.usage.prompt_tokens == expected_prompt  # a chat template would add its role markers
    stream = await sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0, stream=True,
                                          stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    echoed = await sdk.completions.create(model=MODEL, prompt=[prompt], max_tokens=6, temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + whole.choices[0].text


@pytest.mark.parametrize("kwargs,param", [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "x", "n": 9}, "n"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
    ({"prompt": "x", "n": 2, "best_of": 3}, "best_of"),
    ({"prompt": "x", "suffix": "end"}, "suffix"),
    ({"prompt": "x", "logprobs": 2}, "logprobs"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x", "max_tokens": 100_000}, "max_tokens"),
])
async def test_bad_completions_name_the_parameter(sdk, text_pipeline, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.completions.create(model=MODEL, **kwargs)
    assert info.value.body["param"] == param


async def test_n_seeded_choices_are_distinct_reproducible_and_streamed_the_same(sdk, text_pipeline):
    """n=3 with a seed: three choices (index 0, 1, 2), not all alike at temperature 2, the same three
    on a repeat, and streamed interleaved by index to the same texts with one usage chunk for all."""
    # temperature 2 over 12 tokens: three seeds alike would be a broken seed, not a confident model
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12,
               temperature=2.0, seed=11, n=3)
    whole = await sdk.chat.completions.create(**ask)
    again = await sdk.chat.completions.create(**ask)
    texts = [c.message.content for c in whole.choices]
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]
    assert len(set(texts)) > 1
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert whole.usage.completion_tokens >= 3  # every choice's tokens, the prompt once
    single = await sdk.chat.completions.create(**{**ask, "n": 1})
    assert single.choices[0].message.content == texts[0]  # choice 0 is the request's own seed
    assert whole.usage.prompt_tokens == single.usage.prompt_tokens

    stream = await sdk.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    streamed, finished, usages = ["", "", ""], [None] * 3, []
    async for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
            finished[choice.index] = choice.finish_reason or finished[choice.index]
    assert streamed == texts
    assert all(finished) and len(usages) == 1
    assert usages[0].completion_tokens == whole.usage.completion_tokens
    assert usages[0].prompt_tokens == whole.usage.prompt_tokens


async def test_n_completions_and_their_job_ids(sdk, text_pipeline):
    raw = await sdk.completions.with_raw_response.create(model=MODEL, prompt="The sky is", max_tokens=4,
                                                          temperature=0, n=2, extra_headers={"Idempotency-Key": "n-cmpl-1"})
    answer = raw.parse()
    assert raw.headers["X-Genloom-Job-Ids"] == "n-cmpl-1,n-cmpl-1.1"
    assert [c.index for c in answer.choices] == [0, 1]
    assert answer.choices[0].text == answer.choices[1].text  # greedy choices are alike


async def test_n_choices_are_admitted_all_or_none(sdk, text_pipeline, gateway_url, edge_keys):
    """n=4 for a tenant allowed 3 text jobs in flight: a 429, and the three admitted are cancelled."""
    with pytest.raises(openai.RateLimitError):
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count."}],
                                          max_tokens=64, n=4, extra_headers={"Idempotency-Key": "n-all-1"})
    headers = {"Authorization": f"Bearer {edge_keys['t-flow']}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as http:
        assert (await http.get("/v1/jobs/n-all-1.3")).status_code == 404  # never admitted
        deadline = time.monotonic() + 60
        while True:
            states = [(await http.get(f"/v1/jobs/{job}")).json()["status"] for job in ("n-all-1", "n-all-1.1",
                                                                                       "n-all-1.2")]
            if all(state == "cancelled" for state in states) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert states == ["cancelled"] * 3


async def test_non_streamed_completion_matches_streamed_greedy_text(sdk, text_pipeline):
    messages = [{"role": "user", "content": "Say hi."}]
    whole = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    stream = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0,
                                               stream=True)
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content == streamed
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


async def test_usage_reports_the_prompt_tokens_the_prefix_cache_supplied(sdk, text_pipeline):
    """Two different questions share the chat template's head: after the first, the second's head
    (whole 16-token blocks) comes from the engine's prefix cache, and usage says how many tokens, in
    OpenAI's `prompt_tokens_details.cached_tokens`, whole and streamed."""
    ask = dict(model=MODEL, max_tokens=4, temperature=0.7, seed=3)  # sampled: the semantic cache stays out
    await sdk.chat.completions.create(messages=[{"role": "user", "content": "Name a colour."}], **ask)
    whole = await sdk.chat.completions.create(messages=[{"role": "user", "content": "Name a fruit."}], **ask)
    cached = whole.usage.prompt_tokens_details.cached_tokens
    assert 16 <= cached < whole.usage.prompt_tokens and cached % 16 == 0
    # the same question again (sampled, so the semantic cache stays out): every whole block but the last token's
    stream = await sdk.chat.completions.create(messages=[{"role": "user", "content": "Name a fruit."}], **ask,
                                               stream=True, stream_options={"include_usage": True})
    usage = [c.usage async for c in stream if c.usage is not None][-1]
    assert usage.prompt_tokens_details.cached_tokens == (usage.prompt_tokens - 1) // 16 * 16 >= cached


@pytest.mark.parametrize("kwargs,code", [
    ({"model": MODEL, "messages": []}, "invalid_parameter"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 100_000},
     "context_length_exceeded"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "word " * 9000}], "max_tokens": 8},
     "context_length_exceeded"),
    ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "invalid_parameter"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 9}, "invalid_parameter"),
])
async def test_bad_chat_requests_are_400_before_queueing(sdk, text_pipeline, kwargs, code):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.chat.completions.create(**kwargs)
    assert info.value.status_code == 400
    assert info.value.body["code"] == code


async def test_an_unknown_model_is_404_model_not_found_as_openai_answers(sdk, text_pipeline):
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.chat.completions.create(model="gpt-none", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"


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


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def test_a_streamed_chat_shows_in_the_metrics_of_every_process_on_its_path(sdk, text_pipeline, gateway_url,
                                                                                streams_process, moderation_gate):
    """vLLM's names under `genloom:` for the worker's view of the request; the gateway's HTTP counts by
    route template; the events the gate recorded for clients (the fan-out passes them by) and the gate's
    process metrics from their own /metrics."""
    async with httpx.AsyncClient(timeout=30) as http:
        async def page(url: str) -> str:
            response = await http.get(url)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
            return response.text

        streams_url = f"http://127.0.0.1:{streams_process.metrics_port}/metrics"
        gate_url = f"http://127.0.0.1:{moderation_gate.metrics_port}/metrics"
        before_gw, before_streams = await page(f"{gateway_url}/metrics"), await page(streams_url)
        before_gate = await page(gate_url)
        stream = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count to 3."}],
                                                   max_tokens=6, temperature=0, stream=True)
        chunks = [c async for c in stream]
        after_gw = await page(f"{gateway_url}/metrics")
        labels = {"modality": "text", "model_name": MODEL}
        # the worker runs in this test's process, so its metrics are on the gateway's page here
        for name in ("genloom:time_to_first_token_seconds_count", "genloom:request_queue_time_seconds_count",
                     "genloom:e2e_request_latency_seconds_count"):
            assert _sample(after_gw, name, **labels) == _sample(before_gw, name, **labels) + 1, name
        assert _sample(after_gw, "genloom:inter_token_latency_seconds_count", **labels) > _sample(
            before_gw, "genloom:inter_token_latency_seconds_count", **labels)
        generated = _sample(after_gw, "genloom:generation_tokens_total", **labels) - _sample(
            before_gw, "genloom:generation_tokens_total", **labels)
        assert 1 <= generated <= 6
        assert _sample(after_gw, "genloom:num_requests_running", **labels) == 0
        route = {"route": "/v1/chat/completions", "method": "POST", "status": "200"}
        assert _sample(after_gw, "genloom:http_requests_total", **route) == _sample(
            before_gw, "genloom:http_requests_total", **route) + 1
        assert chunks[0].id.removeprefix("chatcmpl-") not in after_gw  # never a job id as a label value
        deadline = time.monotonic() + 30
        while True:  # the gate records the events it released a moment after the client has them
            after_gate = await page(gate_url)
            added = _sample(after_gate, "genloom:events_fanned_out_total", type="completed") - _sample(
                before_gate, "genloom:events_fanned_out_total", type="completed")
            if added >= 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert added >= 1
        # the fan-out passed the gate's records by: they are not recorded twice
        after_streams = await page(streams_url)
        assert _sample(after_streams, "genloom:events_fanned_out_total", type="completed") == _sample(
            before_streams, "genloom:events_fanned_out_total", type="completed")
        assert _sample(after_gate, "process_cpu_seconds_total") > 0


async def test_one_job_through_the_stages_is_one_connected_trace(text_pipeline, gateway_url_b, edge_keys):
    """Gateway (this process) -> genloom.requests -> preparation (streams process) -> worker (this
    process) -> events.raw -> gate (its process, passing the context on, and writing what it released into the
    replay log: the `fanout` spans): every span of the job shares one trace id and hangs from the HTTP request's span."""
    setup_tracing("genloom-tests", TracingSettings(exporter="file", file=TRACE_FILE))
    client = openai.AsyncOpenAI(base_url=f"{gateway_url_b}/v1", api_key=edge_keys["t-flow"], max_retries=0,
                                timeout=120)
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi there."}],
                                                  max_tokens=4, temperature=0.7, stream=True)
    chunks = [c async for c in stream]
    job_id = scoped_job_id("t-flow", chunks[0].id.removeprefix("chatcmpl-"))
    deadline = time.monotonic() + 30
    while True:  # the fan-out's span of the terminal event is written a moment after the client has it
        spans = [json.loads(line) for line in TRACE_FILE.read_text().splitlines() if line.strip()]
        ours = [s for s in spans if s["attributes"].get("genloom.job_id") == job_id]
        trace_ids = {s["trace_id"] for s in ours}
        in_trace = [s for s in spans if s["trace_id"] in trace_ids]
        names = {s["name"] for s in in_trace}
        if {"fanout completed", "prefill", "decode"} <= names or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(trace_ids) == 1, trace_ids  # one trace
    by_id = {s["span_id"]: s for s in in_trace}
    roots = [s for s in in_trace if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["POST /v1/chat/completions"]
    assert all(s["parent_id"] in by_id for s in in_trace if s["parent_id"] is not None)  # connected
    assert {"prepare", "stage privacy", "text job", "prefill", "decode", "fanout started",
            "fanout completed"} <= names
    job_span = next(s for s in in_trace if s["name"] == "text job")
    assert by_id[job_span["parent_id"]]["name"] == "prepare"  # the worker continued the processor's span
    assert len({s["pid"] for s in in_trace}) >= 2  # it crossed processes
    assert not any("Hi there" in json.dumps(s) for s in in_trace)  # no prompt text in a span


async def test_logit_bias_penalties_and_logprobs_through_the_sdk(sdk, text_pipeline):
    messages = [{"role": "user", "content": "Name a fruit."}]
    plain = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0,
                                              logprobs=True, top_logprobs=2)
    content = plain.choices[0].logprobs.content
    assert len(content) == plain.usage.completion_tokens
    assert "".join(t.token for t in content) == plain.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token
    stream = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0,
                                               logprobs=True, stream=True)
    streamed = [t async for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=1e-4)
    # ban the first token the plain answer chose: the answer starts differently
    first_id = text_pipeline.loaded.format_text(content[0].token)[-1:]  # (after any BOS)
    banned = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0,
                                               logit_bias={str(first_id[0]): -100}, logprobs=True)
    assert banned.choices[0].logprobs.content[0].token != content[0].token
    haiku = [{"role": "user", "content": "Write a haiku about the sea."}]  # repeats words when greedy
    penalised = await sdk.chat.completions.create(model=MODEL, messages=haiku, max_tokens=24, temperature=0,
                                                  frequency_penalty=2.0, presence_penalty=2.0)
    repeats = await sdk.chat.completions.create(model=MODEL, messages=haiku, max_tokens=24, temperature=0)
    assert penalised.choices[0].message.content != repeats.choices[0].message.content
    none = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    assert none.choices[0].logprobs is None


@pytest.mark.parametrize("kwargs,param", [
    ({"logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 500}}, "logit_bias"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
])
async def test_bad_sampling_parameters_are_400_naming_them(sdk, text_pipeline, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], **kwargs)
    assert info.value.body["param"] == param
