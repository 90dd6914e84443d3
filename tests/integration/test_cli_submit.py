"""`genloom submit` and `genloom watch` as a person runs them, against a real gateway; the test
plays the worker by emitting events on the real event topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from infra.redis.jobstore import JobStore
from schemas.events import Completed, ModelInfo, Progress, Started, TokenDelta, Usage
from schemas.requests import scoped_job_id

pytestmark = pytest.mark.integration
MODEL = ModelInfo(id="tiny", device="cpu", dtype="float32", random_weights=True)
#: the jobs as the workers know them (scoped by the tenant, t-cli)
CLI_TEXT, CLI_IMAGE = scoped_job_id("t-cli", "cli-text-1"), scoped_job_id("t-cli", "cli-image-1")


def cli(*args: str, url: str, key: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, COLUMNS="200", GENLOOM_URL=url, GENLOOM_API_KEY=key, NO_COLOR="1")
    return asyncio.create_subprocess_exec(sys.executable, "-m", "infra.cli.main", *args, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def accepted(redis, job_id: str, timeout: float = 30.0) -> None:
    """Wait for the fan-out to record the `accepted` of the job t-cli calls `job_id`."""
    store = JobStore(redis)
    for _ in range(int(timeout / 0.1)):
        record = await store.load(scoped_job_id("t-cli", job_id))
        if record is not None and record.last_event_id:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{job_id} was never accepted")


async def test_submit_prints_tokens_as_they_stream_and_watch_replays(gateway_url, edge_keys, worker, edge_redis):
    key = edge_keys["t-cli"]
    proc = await cli("submit", "Say hello", "--job-id", "cli-text-1", "--max-tokens", "8", url=gateway_url, key=key)
    await accepted(edge_redis, "cli-text-1")
    await worker.emit(Started, CLI_TEXT, worker="w", model=MODEL)
    await worker.emit(TokenDelta, CLI_TEXT, text="Hel", tokens=1)
    await worker.emit(TokenDelta, CLI_TEXT, text="lo!", tokens=1)
    await worker.emit(Completed, CLI_TEXT, text="Hello!",
                      usage=Usage(prompt_tokens=4, completion_tokens=2, total_tokens=6))
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "job cli-text-1 queued" in text and "Hello!\n" in text
    assert "completed (stop)" in text and "'completion_tokens': 2" in text

    watch = await cli("watch", "cli-text-1", url=gateway_url, key=key)
    replay, _ = await asyncio.wait_for(watch.communicate(), 60)
    assert watch.returncode == 0 and "Hello!" in replay.decode() and "accepted cli-text-1" in replay.decode()


async def test_submit_shows_a_progress_bar_and_fails_with_the_code(gateway_url, edge_keys, worker, edge_redis):
    key = edge_keys["t-cli"]
    proc = await cli("submit", "a lighthouse", "-m", "image", "--width", "64", "--height", "64",
                     "--steps", "4", "--job-id", "cli-image-1", url=gateway_url, key=key)
    await accepted(edge_redis, "cli-image-1")
    await worker.emit(Started, CLI_IMAGE, worker="w", model=MODEL)
    for step in range(1, 5):
        await worker.emit(Progress, CLI_IMAGE, step=step, total=4, stage="denoise")
    await worker.emit(Completed, CLI_IMAGE, usage=Usage(images=1, steps=4))
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "denoise" in text and "100%" in text and "(random weights)" in text


async def test_bad_input_is_one_clear_line_and_a_failing_exit(gateway_url, edge_keys):
    proc = await cli("submit", "x", "-m", "image", "--width", "65", url=gateway_url, key=edge_keys["t-cli"])
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 1
    assert "error: invalid_parameter" in text and "width=65" in text and "Traceback" not in text
    down = await cli("submit", "x", url="http://127.0.0.1:9", key="k")
    out, _ = await asyncio.wait_for(down.communicate(), 60)
    assert down.returncode == 1 and "is `genloom up` running?" in out.decode()
