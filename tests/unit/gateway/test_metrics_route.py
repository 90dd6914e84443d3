"""The gateway's /metrics: requests counted by route template (never an id), and consumer lag read
without ever holding a scrape up."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import ApiKeys
from gateway.metrics import LagReader
from infra.settings.gateway import GatewaySettings


@pytest.fixture
def client():
    app = create_app(GatewaySettings(), redis=None, producer=None, api_keys=ApiKeys([("gl-m", "t-m")]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_requests_are_counted_by_route_template_and_status(client):
    async with client:
        await client.get("/v1/jobs/secret-job-77")  # no key: 401
        await client.get("/healthz")
        page = (await client.get("/metrics")).text
    assert 'genloom:http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="401"}' in page
    assert 'genloom:http_requests_total{method="GET",route="/healthz",status="200"}' in page
    assert "secret-job-77" not in page


async def test_an_unreachable_broker_leaves_lag_alone_within_the_timeout():
    reader = LagReader("127.0.0.1:1", interval_s=60, timeout_s=0.5)
    await asyncio.wait_for(reader.refresh(), 5)  # no exception, no hang
    await asyncio.wait_for(reader.refresh(), 0.1)  # within the interval: not read again
