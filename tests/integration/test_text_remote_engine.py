"""The text worker driving an OpenAI-compatible engine server (here `transformers serve`, started by
the test on the same SmolLM2 folder) instead of its built-in engine: the job still comes from Kafka,
its tokens still stream through moderation, the fan-out and the gateway to the official OpenAI SDK,
cancel closes the upstream stream at once, and stop strings are applied by genloom."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from infra.kafka.topics import jobs_topic
from infra.models.loader import TextModelSpec, prepare_text_model
from infra.models.settings import TextSettings
from infra.procs import free_port, stop_process
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import serving, skip_backlog
from workers.text.handler import TextHandler
from workers.wiring import job_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory):
    """`transformers serve` (the transformers genloom pins; its non-batching mode) on a free port."""
    s = TextSettings()
    folder = prepare_text_model(TextModelSpec(model=s.model, revision=s.revision, cache_dir=s.cache_dir))
    port = free_port()
    log = tmp_path_factory.mktemp("tserve") / "serve.log"
    exe = Path(sys.executable).with_name("transformers")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "serve", "--force_model", str(folder), "--host", "127.0.0.1", "--port",
                                 str(port), "--device", "cpu", "--dtype", "float32"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", folder
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture(scope="module")
async def remote_worker(kafka_bootstrap, engine_server, gateway_url):
    url, folder = engine_server
    from transformers import AutoTokenizer

    await skip_backlog(kafka_bootstrap, jobs_topic("text"), "genloom-workers-text")
    handler = TextHandler(None, served_name=MODEL, remote=dict(
        url=url, model=str(folder), max_concurrency=8, tokenizer=AutoTokenizer.from_pretrained(str(folder))))
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)):
        yield handler


async def test_a_chat_streams_from_the_engine_server_through_genloom(sdk, remote_worker, engine_server):
    url, folder = engine_server
    messages = [{"role": "user", "content": "Say hello to the sea."}]
    stream = await sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0,
                                               stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    ours = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    direct = await openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0).chat.completions.create(
        model=str(folder), messages=messages, max_tokens=8, temperature=0, stream=True)  # straight to the server
    theirs = "".join([c.choices[0].delta.content or "" async for c in direct if c.choices])
    assert ours and ours == theirs
    assert chunks[-1].usage.prompt_tokens > 5 and chunks[-1].usage.completion_tokens >= 1
    assert remote_worker.model_info.device == f"remote:{url}"


async def test_cancel_closes_the_upstream_stream_at_once(sdk, remote_worker):
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell a very long story about the sea."}],
        max_tokens=200, temperature=0, stream=True)
    received = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 2:
                break
    await stream.close()
    engine = remote_worker.engine
    deadline = time.monotonic() + 20
    while engine._tasks and time.monotonic() < deadline:  # the job's upstream request is gone
        await asyncio.sleep(0.05)
    assert not engine._tasks


async def test_stop_strings_are_genloom_s_whatever_the_server_supports(sdk, remote_worker):
    answer = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "List three fruits, separated by commas."}],
        max_tokens=40, temperature=0, stop=[","])
    assert "," not in answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"


async def test_an_engine_server_that_is_down_fails_the_job_retryably(kafka_bootstrap):
    from workers.text.engine_remote import RemoteEngine, UpstreamUnavailable

    engine = RemoteEngine(f"http://127.0.0.1:{free_port()}", "m", on_outputs=lambda o, r: None, start_timeout_s=1)
    with pytest.raises(UpstreamUnavailable, match="did not answer"):
        await engine.start()
    await engine.stop()
