"""Fuzz fixtures: the fuzz stack (gateway, stand-in worker, webhook receiver) over the session's real
broker, redis-server and streams process (the fan-out), warmed up by one job that must complete."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gateway.auth import generate_key
from infra.kafka.topics import jobs_topic
from schemas.enums import Modality
from tests.fuzz.stack import FuzzStack
from tests.kafka_helpers import skip_backlog
from workers.runner import jobs_group

#: the fuzz tenants: the API fuzz uses the first, the raw-body fuzz the second
FUZZ_TENANTS = ("t-fuzz", "t-fuzz-raw")


@pytest.fixture(scope="session")
def fuzz_keys() -> dict[str, str]:
    return {tenant: generate_key() for tenant in FUZZ_TENANTS}


@pytest.fixture(scope="package")  # stopped after the fuzz tests: an idle stack would slow every later test
def fuzz_stack(kafka_bootstrap, redis_url, streams_process, fuzz_keys, tmp_path_factory):
    stack = FuzzStack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("fuzz-blobs"), fuzz_keys).start()
    try:
        _warm_up(stack.url, fuzz_keys[FUZZ_TENANTS[1]])
        yield stack
    finally:
        stack.stop()
        asyncio.run(_skip_fuzz_jobs(kafka_bootstrap))


async def _skip_fuzz_jobs(bootstrap: str) -> None:
    """Commit every worker group past the jobs the fuzz queued (hundreds, some asking for 32k tokens or
    the largest video), so that the real workers of later tests never run them."""
    await asyncio.gather(*(skip_backlog(bootstrap, jobs_topic(m), jobs_group(m)) for m in Modality))


def _warm_up(url: str, key: str, timeout: float = 90.0) -> None:
    """A text job through the whole chain (gateway, stand-in worker, fan-out) before the fuzz starts."""
    job = {"modality": "text", "params": {"messages": [{"role": "user", "content": "warm-up"}]}}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
        job_id = http.post("/v1/jobs", json=job).raise_for_status().json()["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http.get(f"/v1/jobs/{job_id}").json().get("status") == "completed":
                return
            time.sleep(0.2)
    raise TimeoutError("the warm-up job did not complete within 90 s: see the streams log")
